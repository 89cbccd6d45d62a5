package agent

import "net/http"

func (s *server) codeRoutes(mux *http.ServeMux) {}
