package net_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	stdnet "net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/tap"
	"github.com/vmm-dev/vmm/devices/virtio"
	vnet "github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

// These tests run the device on a real TAP with the host's IP stack on the
// other side. They need root and /dev/net/tun. The 10.123.0.0/24 network
// exists only on the test's own TAP interface, which disappears with it.
var (
	tapHostIP  = stdnet.IPv4(10, 123, 0, 1).To4()
	tapGuestIP = stdnet.IPv4(10, 123, 0, 2).To4()
)

func needTAP(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) to create TAP interfaces")
	}
	if _, err := os.Stat(tap.TUNPath); err != nil {
		t.Skipf("no %s: %v", tap.TUNPath, err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command to configure the TAP")
	}
}

// tapName returns a name unique to this process, so that concurrent test
// runs on one host do not collide.
func tapName(suffix string) string {
	return fmt.Sprintf("vmmn%d%s", os.Getpid(), suffix)
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
}

// tapRig is a device on a fresh TAP with the host at tapHostIP.
type tapRig struct {
	net     *vnet.Net
	drv     *virtiotest.Driver
	mem     *memory.Memory
	hostMAC stdnet.HardwareAddr
}

func newTAPRig(t *testing.T, name string, features uint64) (*tapRig, *virtiotest.Queue, *virtiotest.Queue) {
	t.Helper()
	needTAP(t)
	n, err := vnet.New(vnet.Config{TAP: name, MAC: testMAC})
	require.NoError(t, err)
	assert.Equal(t, name, n.Name())
	mem := virtiotest.NewMemory(16 << 20)
	irq := virtiotest.NewIRQ()
	m, err := virtio.NewMMIO(n, mem, irq)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, m.Close())
		require.NoError(t, n.Close())
		require.Eventually(t, func() bool {
			_, err := os.Stat("/sys/class/net/" + name)
			return errors.Is(err, os.ErrNotExist)
		}, 5*time.Second, 10*time.Millisecond, "the TAP outlived the device")
	})
	ipCmd(t, "addr", "add", tapHostIP.String()+"/24", "dev", name)
	// The guest answers no ARP: tell the host where it is.
	ipCmd(t, "neigh", "replace", tapGuestIP.String(), "lladdr", stdnet.HardwareAddr(testMAC).String(), "dev", name)
	addr, err := os.ReadFile("/sys/class/net/" + name + "/address")
	require.NoError(t, err)
	hostMAC, err := stdnet.ParseMAC(strings.TrimSpace(string(addr)))
	require.NoError(t, err)

	drv := virtiotest.NewDriver(m, mem, irq)
	require.NoError(t, drv.Init(features, 0, 0))
	return &tapRig{net: n, drv: drv, mem: mem, hostMAC: hostMAC}, drv.Queue(vnet.RXQueue), drv.Queue(vnet.TXQueue)
}

func TestTAPNotTAP(t *testing.T) {
	needTAP(t)
	_, err := vnet.New(vnet.Config{TAP: "lo"})
	require.ErrorIs(t, err, tap.ErrNotTAP)
}

// checksum is the Internet checksum of b, folded, not complemented.
func checksum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum
}

// udpFrame builds an Ethernet/IPv4/UDP frame. With partial set the UDP
// checksum field holds only the pseudo-header sum, for NEEDS_CSUM.
func udpFrame(dst, src stdnet.HardwareAddr, dstIP, srcIP stdnet.IP, dport uint16, payload []byte, partial bool) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	copy(ip[12:], srcIP)
	copy(ip[16:], dstIP)
	binary.BigEndian.PutUint16(ip[10:], ^uint16(checksum(0, ip)))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	pseudo := checksum(0, append(append(append([]byte{}, srcIP...), dstIP...), 0, 17, byte((8+len(payload))>>8), byte(8+len(payload))))
	if partial {
		binary.BigEndian.PutUint16(udp[6:], uint16(pseudo))
	} else {
		binary.BigEndian.PutUint16(udp[6:], ^uint16(checksum(pseudo, udp)))
	}
	return f
}

func (r *tapRig) send(t *testing.T, tx *virtiotest.Queue, h vnet.Header, frame []byte) {
	t.Helper()
	data := withHeader(h, frame)
	addr, err := r.drv.Alloc(uint64(len(data)), 64)
	require.NoError(t, err)
	require.NoError(t, r.mem.WriteAt(data, addr))
	_, err = tx.Add([]virtiotest.Buf{{Addr: addr, Len: uint32(len(data))}})
	require.NoError(t, err)
	tx.Kick()
	_, err = tx.WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(t, err)
}

// TestTAPTransmitPartialChecksum: the host's UDP socket receives a
// datagram the guest sent with only a partial checksum (VIRTIO_NET_F_CSUM):
// the header reached the kernel with the frame.
func TestTAPTransmitPartialChecksum(t *testing.T) {
	r, _, tx := newTAPRig(t, tapName("t"), allFeatures)
	conn, err := stdnet.ListenUDP("udp4", &stdnet.UDPAddr{IP: tapHostIP})
	require.NoError(t, err)
	defer conn.Close()
	port := uint16(conn.LocalAddr().(*stdnet.UDPAddr).Port)

	for _, partial := range []bool{false, true} {
		payload := []byte("hello from the guest")
		var h vnet.Header
		if partial {
			h = vnet.Header{Flags: vnet.FlagNeedsCSUM, CSumStart: 34, CSumOffset: 6}
		}
		r.send(t, tx, h, udpFrame(r.hostMAC, testMAC, tapHostIP, tapGuestIP, port, payload, partial))
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(virtiotest.DefaultTimeout)))
		buf := make([]byte, 100)
		n, from, err := conn.ReadFromUDP(buf)
		require.NoError(t, err, "partial=%v: %+v", partial, r.net.Stats())
		assert.Equal(t, payload, buf[:n])
		assert.True(t, from.IP.Equal(tapGuestIP))
	}
	assert.Equal(t, uint64(2), r.net.Stats().TXFrames)
}

// TestTAPReceive: a datagram the host sends reaches the guest's buffers,
// with a partial checksum when the guest accepts one (TUNSETOFFLOAD from
// GUEST_CSUM) and a complete one otherwise.
func TestTAPReceive(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
	}{
		{"GUEST_CSUM and TSO", allFeatures},
		{"no offloads", virtio.TransportFeatures | vnet.FeatureMAC | vnet.FeatureMrgRXBuf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, rx, _ := newTAPRig(t, tapName("r"), tc.features)
			bufs := map[uint16]memory.GuestAddr{}
			for range 64 {
				addr, err := r.drv.Alloc(2048, 64)
				require.NoError(t, err)
				head, err := rx.Add([]virtiotest.Buf{{Addr: addr, Len: 2048, Writable: true}})
				require.NoError(t, err)
				bufs[head] = addr
			}
			rx.Kick()
			conn, err := stdnet.DialUDP("udp4", &stdnet.UDPAddr{IP: tapHostIP}, &stdnet.UDPAddr{IP: tapGuestIP, Port: 5555})
			require.NoError(t, err)
			defer conn.Close()
			payload := []byte("hello from the host")
			_, err = conn.Write(payload)
			require.NoError(t, err)

			// Skip what else the host says on a new link (IPv6 router
			// solicitations, MLD).
			for {
				u, err := rx.WaitUsed(virtiotest.DefaultTimeout)
				require.NoError(t, err, "%+v", r.net.Stats())
				b := make([]byte, u.Len)
				require.NoError(t, r.mem.ReadAt(b, bufs[u.ID]))
				require.Equal(t, uint16(1), binary.LittleEndian.Uint16(b[10:]), "num_buffers")
				f := b[vnet.HeaderSize:]
				if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[23] != 17 || binary.BigEndian.Uint16(f[36:]) != 5555 {
					continue
				}
				assert.Equal(t, payload, f[42:])
				flags := b[0]
				udp := f[34:]
				pseudo := checksum(0, append(append([]byte{}, f[26:34]...), 0, 17, udp[4], udp[5]))
				if tc.features&vnet.FeatureGuestCSUM == 0 {
					assert.Zero(t, flags)
					assert.Equal(t, uint32(0xffff), checksum(pseudo, udp), "a complete UDP checksum")
				} else {
					t.Logf("header flags %#x", flags)
					assert.Zero(t, flags&^(vnet.FlagNeedsCSUM|vnet.FlagDataValid))
				}
				return
			}
		})
	}
}

// NoMergeableRX withdraws VIRTIO_NET_F_MRG_RXBUF from the offer alone.
func TestNoMergeableRXOffer(t *testing.T) {
	needTAP(t)
	withMrg, err := vnet.New(vnet.Config{TAP: "vmmmrg0", MAC: testMAC})
	require.NoError(t, err)
	defer func() { require.NoError(t, withMrg.Close()) }()
	without, err := vnet.New(vnet.Config{TAP: "vmmmrg1", MAC: testMAC, NoMergeableRX: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, without.Close()) }()
	assert.NotZero(t, withMrg.Features()&vnet.FeatureMrgRXBuf)
	assert.Zero(t, without.Features()&vnet.FeatureMrgRXBuf)
	assert.Equal(t, withMrg.Features()&^vnet.FeatureMrgRXBuf, without.Features())
}
