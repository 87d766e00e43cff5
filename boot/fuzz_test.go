package boot

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vmm-dev/vmm/memory"
)

// fuzzRAM is one 64 MiB guest shared by all fuzz iterations of a process:
// allocating it per input would dominate the run time.
var fuzzRAM = sync.OnceValue(func() []byte { return make([]byte, 64<<20) })
var fuzzMu sync.Mutex

// fuzzLoad writes data to a file and loads it as a kernel; whatever the
// bytes, Load must return, not panic or write outside guest RAM.
func fuzzLoad(t *testing.T, path string, data []byte, cmdline string) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fuzzMu.Lock()
	defer fuzzMu.Unlock()
	mem := memory.FromSlices(memory.Region{Base: 0, Host: fuzzRAM()})
	cpu, img, err := Load(mem, Config{KernelPath: path, Cmdline: cmdline, MPTableCPUs: 1})
	if err != nil {
		return
	}
	if cpu == nil || img == nil {
		t.Fatal("Load succeeded without CPU state or image")
	}
	if img.End > memory.GuestAddr(len(fuzzRAM())) || img.Entry < img.LoadAddr || img.Entry >= img.End {
		t.Fatalf("bad image %v", img)
	}
}

func FuzzBzImageHeader(f *testing.F) {
	good := goodBzImage()
	f.Add(good.build(), "console=ttyS0")
	old := good
	old.version = 0x020a
	f.Add(old.build(), "")
	noReloc := good
	noReloc.relocatable = false
	f.Add(noReloc.build(), "x")
	f.Add(good.build()[:0x300], "")
	path := filepath.Join(f.TempDir(), "bzImage")
	f.Fuzz(func(t *testing.T, data []byte, cmdline string) {
		fuzzLoad(t, path, data, cmdline)
	})
}

func FuzzELF(f *testing.F) {
	f.Add(goodELF().build())
	f.Add(goodPVHELF().build())
	four := goodPVHELF()
	four.pvhDesc = 4
	f.Add(four.build())
	f.Add(goodELF().build()[:120])
	path := filepath.Join(f.TempDir(), "vmlinux")
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzLoad(t, path, data, "console=ttyS0")
	})
}
