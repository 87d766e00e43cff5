package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// ErrConfigFile marks a configuration file that cannot describe a VM.
var ErrConfigFile = errors.New("invalid configuration file")

// unsupportedSections are Firecracker configuration-file sections vmm
// does not serve yet: refused by name, so the user sees what is missing.
var unsupportedSections = map[string]string{
	"mmds-config":    "MMDS is not supported yet",
	"cpu-config":     "custom CPU templates are not supported yet",
	"serial":         "serial configuration is not supported yet",
	"pmem":           "pmem devices are not supported yet",
	"memory-hotplug": "memory hot-plug is not supported yet",
}

// LoadConfig applies a Firecracker configuration file (the JSON given to
// --config-file: the objects of the API under the names of GET
// /vm/config) through the same parsing and validation as the API. It
// does not start the VM.
func (c *Controller) LoadConfig(data []byte) error {
	var sections map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&sections); err != nil {
		return fmt.Errorf("%w: %v", ErrConfigFile, err)
	}
	if sections == nil {
		return fmt.Errorf("%w: want a JSON object", ErrConfigFile)
	}
	var names []string
	for name := range sections {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch name {
		case "boot-source", "drives", "machine-config", "network-interfaces", "vsock", "entropy", "balloon", "logger", "metrics":
		default:
			if why, ok := unsupportedSections[name]; ok {
				return fmt.Errorf("%w: %q: %s", ErrConfigFile, name, why)
			}
			return fmt.Errorf("%w: unknown section %q", ErrConfigFile, name)
		}
	}
	apply := func(section string, r Request, err error) error {
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrConfigFile, section, err)
		}
		if resp := c.Handle(r); resp.Status >= 300 {
			var f Fault
			_ = json.Unmarshal(resp.Body, &f) // our own fault body
			return fmt.Errorf("%w: %s: %s", ErrConfigFile, section, f.FaultMessage)
		}
		return nil
	}
	// Firecracker's order (VmResources::from_json): logger and metrics
	// first, so what follows is logged.
	if raw, ok := sections["logger"]; ok {
		var l Logger
		err := decode(raw, &l)
		if err := apply("logger", PutLogger{l}, err); err != nil {
			return err
		}
	}
	if raw, ok := sections["metrics"]; ok {
		r, err := ParseRequest("PUT", "/metrics", raw)
		if err := apply("metrics", r, err); err != nil {
			return err
		}
	}
	if raw, ok := sections["machine-config"]; ok {
		mc, err := parseMachineConfig(raw)
		if err := apply("machine-config", PutMachineConfig{mc}, err); err != nil {
			return err
		}
	}
	if raw, ok := sections["boot-source"]; ok {
		var b BootSource
		err := decode(raw, &b)
		if err := apply("boot-source", PutBootSource{b}, err); err != nil {
			return err
		}
	} else {
		return fmt.Errorf("%w: no \"boot-source\" section", ErrConfigFile)
	}
	if raw, ok := sections["drives"]; ok {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("%w: drives: %v", ErrConfigFile, err)
		}
		for i, one := range list {
			d, err := parseDrive(one)
			if err == nil {
				err = checkID(d.DriveID)
			}
			if err := apply(fmt.Sprintf("drives[%d]", i), PutDrive{d}, err); err != nil {
				return err
			}
		}
	}
	if raw, ok := sections["network-interfaces"]; ok {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("%w: network-interfaces: %v", ErrConfigFile, err)
		}
		for i, one := range list {
			n, err := parseNetworkInterface(one)
			if err == nil {
				err = checkID(n.IfaceID)
			}
			if err := apply(fmt.Sprintf("network-interfaces[%d]", i), PutNetworkInterface{n}, err); err != nil {
				return err
			}
		}
	}
	if raw, ok := sections["vsock"]; ok {
		vs, err := parseVsock(raw)
		if err := apply("vsock", PutVsock{vs}, err); err != nil {
			return err
		}
	}
	if raw, ok := sections["balloon"]; ok {
		b, err := parseBalloon(raw)
		if err := apply("balloon", PutBalloon{b}, err); err != nil {
			return err
		}
	}
	if raw, ok := sections["entropy"]; ok {
		e, err := parseEntropy(raw)
		if err := apply("entropy", PutEntropy{e}, err); err != nil {
			return err
		}
	}
	return nil
}
