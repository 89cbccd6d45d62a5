package agent

import "net/http"

func (s *server) ptyRoutes(mux *http.ServeMux) {}
