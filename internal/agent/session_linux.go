package agent

import "net/http"

func (s *server) sessionRoutes(mux *http.ServeMux) {}
