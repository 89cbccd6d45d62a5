package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		wantErr    string
		check      func(Config) bool
	}{
		{name: "defaults round trip", toml: "", check: func(c Config) bool { return cmp.Equal(c, Default()) }},
		{name: "override", toml: "listen = \"127.0.0.1:9000\"\nstop_grace = \"3s\"\n[defaults]\ncpu = 0.5\nmemory_mb = 256\ndisk_mb = 512\npids = 64\n",
			check: func(c Config) bool {
				return c.Listen == "127.0.0.1:9000" && c.StopGrace.Duration == 3*time.Second && c.Defaults.CPU == 0.5
			}},
		{name: "unknown key", toml: "lisen = \"x\"\n", wantErr: "lisen"},
		{name: "bad version", toml: "version = 2\n", wantErr: "version"},
		{name: "unknown default runtime", toml: "default_runtime = \"kata\"\n", wantErr: "kata"},
		{name: "preview domain", toml: "[preview]\ndomain = \"preview.example.com:8443\"\nscheme = \"https\"\nbase_url = \"https://sbx.example.com\"\n",
			check: func(c Config) bool {
				return c.Preview == Preview{Domain: "preview.example.com:8443", Scheme: "https", BaseURL: "https://sbx.example.com"}
			}},
		{name: "preview domain with a scheme", toml: "[preview]\ndomain = \"http://x.example.com\"\n", wantErr: "preview.domain"},
		{name: "preview domain uppercase", toml: "[preview]\ndomain = \"Preview.example.com\"\n", wantErr: "preview.domain"},
		{name: "preview domain one label", toml: "[preview]\ndomain = \"localhost\"\n", wantErr: "preview.domain"},
		{name: "preview domain bad port", toml: "[preview]\ndomain = \"p.localhost:0\"\n", wantErr: "bad port"},
		{name: "preview scheme", toml: "[preview]\nscheme = \"ftp\"\n", wantErr: "preview.scheme"},
		{name: "preview base url", toml: "[preview]\nbase_url = \"sbx.example.com/x\"\n", wantErr: "preview.base_url"},
		{name: "defaults above maximums", toml: "[defaults]\ncpu = 64\nmemory_mb = 1\ndisk_mb = 1\npids = 1\n", wantErr: "exceed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "sbx.toml")
			body := tc.toml
			if tc.name == "defaults round trip" {
				b, err := Default().Encode()
				if err != nil {
					t.Fatal(err)
				}
				body = string(b)
			}
			os.WriteFile(p, []byte(body), 0o644)
			c, err := Load(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}
