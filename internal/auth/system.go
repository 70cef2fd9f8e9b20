package auth

import (
	"embed"
	"io/fs"

	"github.com/aibos/kernel/api"
)

//go:embed system/*.yaml
var systemFS embed.FS

// SystemBundle is the reserved system bundle's files: the default
// authorization of every kernel route, compiled and tested by the engine
// like any bundle.
func SystemBundle() []api.File {
	var out []api.File
	names, _ := fs.Glob(systemFS, "system/*.yaml")
	for _, n := range names {
		b, _ := systemFS.ReadFile(n)
		out = append(out, api.File{Name: n, Data: b})
	}
	return out
}
