package aml

import "fmt"

// Scope opens an existing namespace scope and places Terms in it
// (DefScope, ACPI 6.4 §20.2.5.1).
type Scope struct {
	Name  string
	Terms []Term
}

func (s Scope) AppendAML(b []byte) ([]byte, error) {
	body, err := namedBody(s.Name, s.Terms)
	if err != nil {
		return nil, fmt.Errorf("scope %s: %w", s.Name, err)
	}
	return appendPackage(append(b, scopeOp), body)
}

// Device declares a device object holding Terms
// (DefDevice, ExtOpPrefix DeviceOp, ACPI 6.4 §20.2.5.2).
type Device struct {
	Name  string
	Terms []Term
}

func (d Device) AppendAML(b []byte) ([]byte, error) {
	body, err := namedBody(d.Name, d.Terms)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", d.Name, err)
	}
	return appendPackage(append(b, extOpPrefix, deviceOp), body)
}

// Name binds a name to a data object (DefName, ACPI 6.4 §20.2.5.1).
type Name struct {
	Name  string
	Value Term
}

func (n Name) AppendAML(b []byte) ([]byte, error) {
	path, err := NameString(n.Name)
	if err != nil {
		return nil, err
	}
	if n.Value == nil {
		return nil, fmt.Errorf("%w: name %s has no value", ErrValue, n.Name)
	}
	b = append(append(b, nameOp), path...)
	if b, err = n.Value.AppendAML(b); err != nil {
		return nil, fmt.Errorf("name %s: %w", n.Name, err)
	}
	return b, nil
}

func namedBody(name string, terms []Term) ([]byte, error) {
	path, err := NameString(name)
	if err != nil {
		return nil, err
	}
	return appendTerms(path, terms)
}
