package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/aibos/kernel/guest"
)

// minimal is the smallest module the validator accepts: a memory and an
// aibos_tick export, importing aibos/v1.log.
var minimal = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	// type section: (i32,i32,i32)->(), (i32)->i32
	0x01, 0x0c, 0x02, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, 0x60, 0x01, 0x7f, 0x01, 0x7f,
	// import section: "aibos/v1" "log" func type 0
	0x02, 0x10, 0x01, 0x08, 'a', 'i', 'b', 'o', 's', '/', 'v', '1', 0x03, 'l', 'o', 'g', 0x00, 0x00,
	// function section: one function of type 1
	0x03, 0x02, 0x01, 0x01,
	// memory section: one memory, min 1
	0x05, 0x03, 0x01, 0x00, 0x01,
	// export section: "memory" mem 0, "aibos_tick" func 1
	0x07, 0x17, 0x02, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
	0x0a, 'a', 'i', 'b', 'o', 's', '_', 't', 'i', 'c', 'k', 0x00, 0x01,
	// code section: (local.get 0)
	0x0a, 0x06, 0x01, 0x04, 0x00, 0x20, 0x00, 0x0b,
}

func TestValidateMinimal(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	cm, info, err := Validate(ctx, r, minimal)
	if err != nil {
		t.Fatal(err)
	}
	cm.Close(ctx)
	if len(info.Imports) != 1 || info.Imports[0] != "aibos/v1.log" || info.MinPages != 1 {
		t.Fatalf("info %+v", info)
	}
	// Renaming the import to one the host lacks is refused, with its
	// position.
	bad := bytes.Replace(minimal, []byte("\x03log"), []byte("\x03lag"), 1)
	_, _, err = Validate(ctx, r, bad)
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidModule) || len(ve.Problems) != 1 || !bytes.Contains([]byte(ve.Problems[0]), []byte("import 0 (aibos/v1.lag)")) {
		t.Fatalf("renamed import: %v", err)
	}
}

// FuzzValidate: any bytes give a compiled module or a ValidationError,
// never a panic; an accepted module imports nothing outside the ABI.
func FuzzValidate(f *testing.F) {
	f.Add(minimal)
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Add([]byte("not wasm"))
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		cm, info, err := Validate(ctx, r, b)
		if err != nil {
			if !errors.Is(err, ErrInvalidModule) {
				t.Fatalf("error not an ErrInvalidModule: %v", err)
			}
			return
		}
		defer cm.Close(ctx)
		for _, imp := range info.Imports {
			mod, name, _ := bytes.Cut([]byte(imp), []byte("."))
			switch string(mod) {
			case HostModule:
				if _, ok := hostSignatures[string(name)]; !ok {
					t.Fatalf("accepted host import %s", imp)
				}
			case wasiModule:
			default:
				t.Fatalf("accepted import %s", imp)
			}
		}
	})
}

// fakeMemory is a guest memory for the decoders.
type fakeMemory []byte

func (m fakeMemory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m)) {
		return nil, false
	}
	return m[off : off+n], true
}

// FuzzHostDecoders: the decoders of host call arguments never panic and
// never return bytes outside what the guest pointed at.
func FuzzHostDecoders(f *testing.F) {
	f.Add([]byte("kernel.audit.query{\"input\":{}}"), uint32(0), uint32(18), uint32(18), uint32(12), int64(10))
	f.Add([]byte{0xff, 0xfe}, uint32(1), uint32(5), uint32(0), uint32(0), int64(-1))
	f.Fuzz(func(t *testing.T, mem []byte, np, nl, bp, bl uint32, delay int64) {
		m := fakeMemory(mem)
		name, body, herr := decodeInvoke(m, np, nl, bp, bl)
		if herr == nil {
			if len(name) == 0 || len(name) > maxActionName || len(body) > maxInvokeBody {
				t.Fatalf("accepted name %q, body of %d bytes", name, len(body))
			}
			if src, ok := m.Read(bp, bl); ok && !bytes.Equal(src, body) && len(body) > 0 {
				t.Fatal("body differs from the guest's bytes")
			}
		} else if herr.Code != codeBadArgument {
			t.Fatalf("code %q", herr.Code)
		}
		if _, herr := decodeTimer(m, np, nl, delay); herr == nil && (delay < 0 || delay > maxDelayMS) {
			t.Fatalf("accepted delay %d", delay)
		}
		// The guest-side decoders of what the host sends.
		_, _ = guest.DecodeTick(mem)
		_, _ = guest.DecodeResult(mem)
		_ = guest.DecodeError(mem)
	})
}

// Declared counts the bytes cannot hold are refused before the compiler
// allocates for them (inputs the fuzzer found slow: an import and a
// function section claiming hundreds of millions of entries).
func TestValidateRefusesCountBombs(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	for _, b := range []string{
		"\x00asm\x01\x00\x00\x00\x02\xe9\xe90\xd7\xf8\x87S",
		"\x00asm\x01\x00\x00\x00\x03\x92\xb6\xb10\xb1\xe0\xdab0",
		"\x00asm\x01\x00\x00\x00\x03\x05\xff\xff\xff\xff\x0f",
	} {
		_, _, err := Validate(ctx, r, []byte(b))
		if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), "declares") {
			t.Errorf("%q: %v", b, err)
		}
	}
	if _, _, err := Validate(ctx, r, minimal); err != nil {
		t.Fatalf("the minimal module: %v", err)
	}
}

// FuzzDecodeHostOp: any body of POST /v1/agents/{id}/host gives a host
// operation or an error, never a panic; an accepted one names a node and
// a known operation, and encodes back to an operation that decodes alike.
func FuzzDecodeHostOp(f *testing.F) {
	for _, s := range []string{
		`{"node":"n2","epoch":3,"op":"invoke","action":"data.query","body":"eyJpbnB1dCI6e319"}`,
		`{"node":"n2","epoch":3,"op":"kv","key":"k","value":"dg=="}`,
		`{"node":"n2","epoch":3,"op":"kv","key":"k","delete":true}`,
		`{"node":"n2","epoch":3,"op":"timer_set","name":"t","due":"2026-01-01T00:00:00Z"}`,
		`{"node":"n2","epoch":3,"op":"timer_fired","name":"t","due":"2026-01-01T00:00:00Z"}`,
		`{"node":"n2","epoch":3,"op":"version","version":"2"}`,
		`{"node":"n2","epoch":3,"op":"status","status":{"agent":"a1","desired":"running","state":"running","restarts":0,"kv_keys":0,"kv_bytes":0}}`,
		`{"node":"n2","op":"reboot"}`, `{}`, `{"node":"n2","epoch":-1}`, `[]`, `{"node":"n2","op":"kv","key":""} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		op, err := decodeHostOp(b)
		if err != nil {
			return
		}
		switch op.Op {
		case opInvoke, opKV, opTimerSet, opTimerCancel, opTimerFired, opVersion, opStatus:
		default:
			t.Fatalf("accepted unknown op %q", op.Op)
		}
		if op.Node == "" || (op.Op == opStatus && op.Status == nil) {
			t.Fatalf("accepted %+v", op)
		}
		again, err := json.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		op2, err := decodeHostOp(again)
		if err != nil {
			t.Fatalf("re-encoded %s: %v", again, err)
		}
		if again2, _ := json.Marshal(op2); !bytes.Equal(again, again2) {
			t.Fatalf("round trip %s != %s", again, again2)
		}
	})
}
