// Package api holds the OpenAPI document of sbx's native /v1 API, the
// contract that internal/httpapi implements and sdk/go speaks. Tests load
// it to validate every request and answer (internal/httpapi/apitest).
package api

import _ "embed"

// OpenAPI is the contents of openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
