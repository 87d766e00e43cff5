package console

// escapeKey starts a console command, as in QEMU's -nographic: Ctrl-A.
const escapeKey = 0x01

// helpText lists the escape commands. Lines end in "\r\n" because the
// terminal may be in raw mode, where "\n" alone does not return the
// carriage.
const helpText = "\r\n" +
	"C-a h    print this help\r\n" +
	"C-a x    exit the VMM\r\n" +
	"C-a C-a  send C-a to the guest\r\n"

type eventKind int

const (
	eventData eventKind = iota + 1 // bytes for the guest
	eventQuit                      // C-a x
	eventHelp                      // C-a h or C-a ?
)

type event struct {
	kind eventKind
	data []byte // eventData only
}

// escapeParser splits host input into guest data and escape commands. It
// keeps a pending C-a across calls, so input may arrive in any pieces.
type escapeParser struct {
	pending bool
}

// feed parses in and returns what it holds, in order. Adjacent guest data
// comes as one event; its bytes are a copy, safe to keep.
func (p *escapeParser) feed(in []byte) []event {
	var events []event
	var data []byte
	command := func(k eventKind) {
		if len(data) > 0 {
			events = append(events, event{kind: eventData, data: data})
			data = nil
		}
		events = append(events, event{kind: k})
	}
	for _, b := range in {
		if !p.pending {
			if b == escapeKey {
				p.pending = true
			} else {
				data = append(data, b)
			}
			continue
		}
		p.pending = false
		switch b {
		case 'x':
			command(eventQuit)
		case 'h', '?':
			command(eventHelp)
		case escapeKey:
			data = append(data, escapeKey)
		default:
			// Not a command: the guest gets both keys rather than
			// losing a stray C-a (QEMU drops them).
			data = append(data, escapeKey, b)
		}
	}
	if len(data) > 0 {
		events = append(events, event{kind: eventData, data: data})
	}
	return events
}

// flush ends the input: a C-a still waiting for its command is guest data.
func (p *escapeParser) flush() []byte {
	if !p.pending {
		return nil
	}
	p.pending = false
	return []byte{escapeKey}
}
