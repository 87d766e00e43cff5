package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Module is one kernel module to load.
type Module struct {
	Name string // normalized: '-' as '_', no suffix
	Path string // on the host
}

// ErrModuleDir: no module tree for the kernel's release.
var ErrModuleDir = errors.New("no kernel module directory")

// ModuleName normalizes a module's name as the kernel does ('-' and '_'
// are the same) and drops the directory and the .ko suffix.
func ModuleName(s string) string {
	s = filepath.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// FindModuleDir returns the module tree of release under dir: dir itself
// when it holds one (a kernel/ folder or modules.dep), dir/<release>, or
// dir/lib/modules/<release> (an unpacked kernel package).
func FindModuleDir(dir, release string) (string, error) {
	for _, d := range []string{dir, filepath.Join(dir, release), filepath.Join(dir, "lib", "modules", release)} {
		for _, probe := range []string{"modules.dep", "kernel", "modules.order"} {
			if _, err := os.Stat(filepath.Join(d, probe)); err == nil {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("%w for release %s in %s (looked for kernel/, modules.dep, %s/ and lib/modules/%s/)", ErrModuleDir, release, dir, release, release)
}

// Tree is a kernel's module directory, indexed.
type Tree struct {
	Dir     string
	paths   map[string]string   // name -> path
	deps    map[string][]string // name -> direct dependencies
	builtin map[string]bool
}

// Has reports whether the kernel has module name: as a module file in
// the tree, or built in (modules.builtin).
func (t *Tree) Has(name string) bool {
	_, file := t.paths[name]
	return file || t.builtin[name]
}

// OpenTree indexes dir. With a modules.dep (written by depmod) the
// dependencies come from it. Without one, as in Debian's kernel packages
// before depmod ran, they come from the modules themselves: each
// module's undefined symbols, matched against the symbols the others
// export (__ksymtab_ entries), plus .modinfo's depends= (which alone is
// incomplete: Debian's virtio.ko needs virtio_break_device from
// virtio_ring.ko and does not say so). A symbol no module exports is the
// kernel's own.
func OpenTree(dir string) (*Tree, error) {
	t := &Tree{Dir: dir, paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			t.builtin[ModuleName(l)] = true
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isModule(p) {
			if _, dup := t.paths[ModuleName(p)]; !dup {
				t.paths[ModuleName(p)] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", dir, err)
	}
	if f, err := os.Open(filepath.Join(dir, "modules.dep")); err == nil {
		defer f.Close()
		t.deps, err = ParseModulesDep(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		return t, nil
	}
	if err := t.symbolDeps(); err != nil {
		return nil, err
	}
	return t, nil
}

func isModule(p string) bool {
	for _, s := range []string{".ko", ".ko.gz", ".ko.xz", ".ko.zst"} {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

// ParseModulesDep reads depmod's modules.dep: "path.ko: dep.ko dep.ko".
func ParseModulesDep(r io.Reader) (map[string][]string, error) {
	deps := map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: no ':' in %q", n, line)
		}
		name := ModuleName(mod)
		deps[name] = nil
		for _, d := range strings.Fields(rest) {
			deps[name] = append(deps[name], ModuleName(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return deps, nil
}

// ModInfo holds what the resolver needs of one module file.
type ModInfo struct {
	Depends   []string // .modinfo depends=
	Undefined []string // symbols it needs
	Exported  []string // symbols it exports
}

// ReadModInfo reads a module's ELF image; only the sections it needs
// are read.
func ReadModInfo(image io.ReaderAt) (ModInfo, error) {
	f, err := elf.NewFile(image)
	if err != nil {
		return ModInfo{}, fmt.Errorf("module ELF: %w", err)
	}
	defer f.Close()
	var mi ModInfo
	if s := f.Section(".modinfo"); s != nil {
		b, err := s.Data()
		if err != nil {
			return ModInfo{}, fmt.Errorf("module .modinfo: %w", err)
		}
		mi.Depends = ParseModinfoDepends(b)
	}
	syms, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return ModInfo{}, fmt.Errorf("module symbols: %w", err)
	}
	for _, s := range syms {
		switch {
		case s.Section == elf.SHN_UNDEF && s.Name != "":
			mi.Undefined = append(mi.Undefined, s.Name)
		case strings.HasPrefix(s.Name, "__ksymtab_"):
			mi.Exported = append(mi.Exported, strings.TrimPrefix(s.Name, "__ksymtab_"))
		}
	}
	return mi, nil
}

// ParseModinfoDepends reads depends= from a .modinfo section: NUL
// separated key=value strings, depends a comma-separated list.
func ParseModinfoDepends(modinfo []byte) []string {
	var deps []string
	for _, kv := range bytes.Split(modinfo, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, ModuleName(d))
				}
			}
		}
	}
	return deps
}

// ReadModule returns a module's image, decompressed when gzip'd; an xz
// or zstd module is returned as it is, for a kernel that decompresses
// itself (MODULE_INIT_COMPRESSED_FILE).
func ReadModule(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	if strings.HasSuffix(p, ".gz") {
		z, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", p, err)
		}
		if b, err = io.ReadAll(z); err != nil {
			return nil, fmt.Errorf("module %s: %w", p, err)
		}
	}
	return b, nil
}

func (t *Tree) symbolDeps() error {
	infos := map[string]ModInfo{}
	exporter := map[string]string{}
	names := make([]string, 0, len(t.paths))
	for n := range t.paths {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := t.paths[n]
		if !strings.HasSuffix(p, ".ko") && !strings.HasSuffix(p, ".ko.gz") {
			continue // compressed in a way we do not read: depends= unknown
		}
		mi, err := readModInfoFile(p)
		if err != nil {
			return err
		}
		infos[n] = mi
		for _, s := range mi.Exported {
			if _, ok := exporter[s]; !ok {
				exporter[s] = n
			}
		}
	}
	for n, mi := range infos {
		seen := map[string]bool{n: true}
		var deps []string
		add := func(d string) {
			if !seen[d] {
				seen[d] = true
				deps = append(deps, d)
			}
		}
		for _, d := range mi.Depends {
			add(d)
		}
		for _, s := range mi.Undefined {
			if e, ok := exporter[s]; ok {
				add(e)
			}
		}
		sort.Strings(deps)
		t.deps[n] = deps
	}
	return nil
}

// Resolve returns the modules that want needs, each after everything it
// depends on. Wanted modules the tree does not have are returned in
// missing (built into the kernel when modules.builtin says so: those are
// not reported).
func (t *Tree) Resolve(want []string) (mods []Module, missing []string) {
	return OrderModules(want, t.deps, t.paths, t.builtin)
}

// OrderModules orders the closure of want over deps so that each module
// comes after its dependencies (a depth-first post-order; a cycle, which
// depmod would refuse, is cut where it closes).
func OrderModules(want []string, deps map[string][]string, paths map[string]string, builtin map[string]bool) (mods []Module, missing []string) {
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string)
	visit = func(n string) {
		if state[n] != 0 {
			return
		}
		state[n] = 1
		for _, d := range deps[n] {
			visit(d)
		}
		state[n] = 2
		if p, ok := paths[n]; ok {
			mods = append(mods, Module{Name: n, Path: p})
		}
	}
	for _, w := range want {
		w = ModuleName(w)
		if _, ok := paths[w]; !ok {
			if !builtin[w] {
				missing = append(missing, w)
			}
			continue
		}
		visit(w)
	}
	return mods, missing
}

func readModInfoFile(p string) (ModInfo, error) {
	var r io.ReaderAt
	if strings.HasSuffix(p, ".gz") {
		b, err := ReadModule(p)
		if err != nil {
			return ModInfo{}, err
		}
		r = bytes.NewReader(b)
	} else {
		f, err := os.Open(p)
		if err != nil {
			return ModInfo{}, fmt.Errorf("read module: %w", err)
		}
		defer f.Close()
		r = f
	}
	mi, err := ReadModInfo(r)
	if err != nil {
		return ModInfo{}, fmt.Errorf("%s: %w", p, err)
	}
	return mi, nil
}
