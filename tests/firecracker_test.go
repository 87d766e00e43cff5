package tests

import (
	"testing"
	"time"
)

// firecrackerGroup boots the reference guest through Firecracker's
// configuration file: `vmm firecracker --no-api --config-file` and
// `vmm run --config-file`, with a root drive (so root=/dev/vda rw joins
// the command line, as Firecracker adds it).
var firecrackerGroup = &group{
	name:        "firecracker",
	timeout:     5 * time.Minute,
	stepTimeout: 90 * time.Second,
	script: `dd if=/dev/zero of="$WORK/root.img" bs=1M count=4 2>/dev/null
cat > "$WORK/vm.json" <<JSON
{
  "boot-source": {"kernel_image_path": "$GUEST_BZIMAGE", "initrd_path": "$GUEST_INITRD", "boot_args": "$GUEST_CMDLINE"},
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
  "drives": [{"drive_id": "rootfs", "path_on_host": "$WORK/root.img", "is_root_device": true, "is_read_only": false}]
}
JSON
run_vmm fc-config-file firecracker --no-api --id sandbox-vm --config-file "$WORK/vm.json"
run_vmm run-config-file run --config-file "$WORK/vm.json"
`,
}

func TestFirecrackerConfigFileBootsLinux(t *testing.T) {
	s := firecrackerGroup.step(t, "fc-config-file")
	requireCleanExit(t, s, "vmm guest: init reached")
}

func TestRunConfigFileBootsLinux(t *testing.T) {
	s := firecrackerGroup.step(t, "run-config-file")
	requireCleanExit(t, s, "vmm guest: init reached")
}
