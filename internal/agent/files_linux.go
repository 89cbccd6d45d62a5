package agent

import "net/http"

func (s *server) fileRoutes(mux *http.ServeMux) {}
