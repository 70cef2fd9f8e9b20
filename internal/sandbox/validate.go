package sandbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	wapi "github.com/tetratelabs/wazero/api"
)

// HostModule is the name of the kernel's host module: the ABI version a
// guest imports from.
const HostModule = "aibos/v1"

const wasiModule = "wasi_snapshot_preview1"

// Exports a guest module must (or may) have.
const (
	exportTick   = "aibos_tick"   // (len i32) -> i32: run one tick
	exportHealth = "aibos_health" // () -> i32, optional: 0 is healthy
	exportInit   = "_initialize"  // a reactor's initialiser (Go's c-shared)
	exportStart  = "_start"       // a command's entry point: refused
	exportMemory = "memory"
)

var (
	i32 = wapi.ValueTypeI32
	i64 = wapi.ValueTypeI64
)

// signature is a function type.
type signature struct{ params, results []wapi.ValueType }

func (s signature) String() string {
	name := func(ts []wapi.ValueType) string {
		var b []string
		for _, t := range ts {
			b = append(b, wapi.ValueTypeName(t))
		}
		return "(" + strings.Join(b, ", ") + ")"
	}
	return name(s.params) + " -> " + name(s.results)
}

func sig(params []wapi.ValueType, results ...wapi.ValueType) signature {
	return signature{params, results}
}

// hostSignatures is the ABI of aibos/v1 (DESIGN.md).
var hostSignatures = map[string]signature{
	"invoke":       sig([]wapi.ValueType{i32, i32, i32, i32}, i32),
	"log":          sig([]wapi.ValueType{i32, i32, i32}),
	"kv_get":       sig([]wapi.ValueType{i32, i32}, i32),
	"kv_put":       sig([]wapi.ValueType{i32, i32, i32, i32}, i32),
	"kv_delete":    sig([]wapi.ValueType{i32, i32}, i32),
	"now":          sig(nil, i64),
	"timer_set":    sig([]wapi.ValueType{i32, i32, i64}, i32),
	"timer_cancel": sig([]wapi.ValueType{i32, i32}, i32),
	"result":       sig([]wapi.ValueType{i32, i32}, i32),
}

// wasiAllowed are the WASI functions a guest may import: what the Go
// runtime needs to start, write its own stdout/stderr (to the node's log)
// and read clocks and randomness — all served by the kernel with no
// filesystem mounted, no sockets and no environment. Files (path_*),
// sockets (sock_*) and the rest are refused at deploy, so a module that
// needs them fails there rather than at run time.
var wasiAllowed = []string{
	"args_get", "args_sizes_get", "environ_get", "environ_sizes_get",
	"clock_res_get", "clock_time_get", "random_get", "proc_exit", "sched_yield", "poll_oneoff",
	"fd_write", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags", "fd_prestat_get", "fd_prestat_dir_name",
}

// ModuleInfo is what validation found in a module.
type ModuleInfo struct {
	Imports   []string // "module.name", in import order
	HasHealth bool
	Reactor   bool // exports _initialize
	MinPages  uint32
}

// ValidationError is a module refused at deploy: every problem, each with
// where and what to do.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	return "module refused: " + strings.Join(e.Problems, "; ")
}

// ErrInvalidModule is wrapped by every validation failure.
var ErrInvalidModule = errors.New("invalid module")

func (e *ValidationError) Unwrap() error { return ErrInvalidModule }

// Validate compiles wasm with r (which may hold a compilation cache) and
// checks its imports and exports against the ABI. The compiled module is
// returned for reuse; the caller closes it.
func Validate(ctx context.Context, r wazero.Runtime, wasm []byte) (wazero.CompiledModule, ModuleInfo, error) {
	var info ModuleInfo
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, info, &ValidationError{Problems: []string{"not a WebAssembly binary (it must start with \\0asm): build it with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared"}}
	}
	if err := checkSections(wasm); err != nil {
		return nil, info, &ValidationError{Problems: []string{err.Error()}}
	}
	cm, err := r.CompileModule(ctx, wasm)
	if err != nil {
		return nil, info, &ValidationError{Problems: []string{"does not compile: " + err.Error()}}
	}
	var probs []string
	for i, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		info.Imports = append(info.Imports, mod+"."+name)
		got := signature{f.ParamTypes(), f.ResultTypes()}
		switch mod {
		case HostModule:
			want, ok := hostSignatures[name]
			switch {
			case !ok:
				probs = append(probs, fmt.Sprintf("import %d (%s.%s): the host module has no function %q (it has %s); use the guest package of this kernel version", i, mod, name, name, strings.Join(sortedKeys(hostSignatures), ", ")))
			case !slices.Equal(got.params, want.params) || !slices.Equal(got.results, want.results):
				probs = append(probs, fmt.Sprintf("import %d (%s.%s): type %s, want %s", i, mod, name, got, want))
			}
		case wasiModule:
			if !slices.Contains(wasiAllowed, name) {
				probs = append(probs, fmt.Sprintf("import %d (%s.%s): not allowed in the sandbox (no filesystem, sockets or environment; allowed WASI functions: %s); remove what uses it — files, network and os.Getenv have no place in a sandboxed agent: act through guest.Invoke", i, mod, name, strings.Join(wasiAllowed, ", ")))
			}
		default:
			probs = append(probs, fmt.Sprintf("import %d (%s.%s): module %q is not available; a guest imports only %q and WASI", i, mod, name, mod, HostModule))
		}
	}
	if n := len(cm.ImportedMemories()); n > 0 {
		probs = append(probs, "imports a memory: a guest must define its own")
	}
	exports := cm.ExportedFunctions()
	checkExport := func(name string, want signature, required bool) bool {
		f, ok := exports[name]
		if !ok {
			if required {
				probs = append(probs, fmt.Sprintf("export %q is missing: a guest exports %s %s (the guest package does: import github.com/aibos/kernel/guest and call guest.Handle)", name, name, want))
			}
			return false
		}
		if got := (signature{f.ParamTypes(), f.ResultTypes()}); !slices.Equal(got.params, want.params) || !slices.Equal(got.results, want.results) {
			probs = append(probs, fmt.Sprintf("export %q: type %s, want %s", name, got, want))
		}
		return true
	}
	checkExport(exportTick, sig([]wapi.ValueType{i32}, i32), true)
	info.HasHealth = checkExport(exportHealth, sig(nil, i32), false)
	info.Reactor = checkExport(exportInit, sig(nil), false)
	if _, ok := exports[exportStart]; ok {
		probs = append(probs, "exports _start: it is a command module; build a reactor with -buildmode=c-shared (its main runs once, at start)")
	}
	mem, ok := cm.ExportedMemories()[exportMemory]
	if !ok {
		probs = append(probs, `export "memory" is missing: the host reads and writes the guest's buffers in it`)
	} else {
		info.MinPages = mem.Min()
	}
	if len(probs) > 0 {
		cm.Close(ctx)
		return nil, info, &ValidationError{Problems: probs}
	}
	return cm, info, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkSections reads the module's section headers before the compiler
// does: every section must fit in what follows it, and the vector that
// begins a known section (types, imports, functions, … data) cannot hold
// more entries than the section has bytes, since each takes at least one.
// A declared count is what a decoder allocates for, so a few bytes could
// otherwise ask for gigabytes.
func checkSections(wasm []byte) error {
	off := 8
	for off < len(wasm) {
		id := wasm[off]
		size, n, ok := leb32(wasm[off+1:])
		if !ok {
			return fmt.Errorf("section %d at byte %d: its size is not a valid LEB128 u32", id, off)
		}
		body := off + 1 + n
		if uint64(size) > uint64(len(wasm)-body) {
			return fmt.Errorf("section %d at byte %d declares %d bytes, but only %d follow: the module is truncated or corrupt", id, off, size, len(wasm)-body)
		}
		if id >= 1 && id <= 11 && id != 8 { // 8 (start) is one index, not a vector
			count, _, ok := leb32(wasm[body : body+int(size)])
			if !ok {
				return fmt.Errorf("section %d at byte %d: its entry count is not a valid LEB128 u32", id, off)
			}
			if count > size {
				return fmt.Errorf("section %d at byte %d declares %d entries in %d bytes: the module is corrupt", id, off, count, size)
			}
		}
		off = body + int(size)
	}
	return nil
}

// leb32 decodes an unsigned LEB128 of at most 32 bits.
func leb32(b []byte) (v uint32, n int, ok bool) {
	var shift uint
	for i := 0; i < len(b) && i < 5; i++ {
		c := b[i]
		if i == 4 && c > 0x0f {
			return 0, 0, false
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, i + 1, true
		}
		shift += 7
	}
	return 0, 0, false
}
