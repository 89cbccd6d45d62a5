package httpapi

import (
	"net/http"

	"github.com/sbx-sh/sbx/internal/store"
)

func (h *handler) codeRoutes(route func(string, func(http.ResponseWriter, *http.Request, store.Tenant))) {
}
