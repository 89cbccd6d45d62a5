package image

import "github.com/google/go-containerregistry/pkg/authn"

type authConfig = authn.AuthConfig
