package proxy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// Registered for the walk: error details of statuses, update protocol messages packed in Any.
	_ "go.temporal.io/api/errordetails/v1"
	_ "go.temporal.io/api/update/v1"
)

var updateGolden = flag.Bool("update", false, "rewrite proxy/testdata/text-fields.golden from the API descriptors")

const textFieldsGolden = "testdata/text-fields.golden"

// stringField is one string field of the API, or the string keys or values of one map field.
type stringField struct {
	fd   protoreflect.FieldDescriptor
	part string // "", "[key]" or "[value]"
}

func (s stringField) name() string { return string(s.fd.FullName()) + s.part }

// textFieldRoots are the message types the inventory starts from: every WorkflowService and OperatorService request
// and response, every error detail a status of theirs may carry, and the update protocol messages packed in Any.
func textFieldRoots(t *testing.T) []protoreflect.MessageDescriptor {
	t.Helper()
	var roots []protoreflect.MessageDescriptor
	for _, name := range []protoreflect.FullName{workflowServiceName, operatorServiceName} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			t.Fatal(err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			roots = append(roots, methods.Get(i).Input(), methods.Get(i).Output())
		}
	}
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		name := string(mt.Descriptor().FullName())
		if strings.HasPrefix(name, "temporal.api.errordetails.v1.") || strings.HasPrefix(name, "temporal.api.update.v1.") {
			roots = append(roots, mt.Descriptor())
		}
		return true
	})
	return roots
}

// stringFieldInventory lists every string field reachable from roots through message fields and map values, sorted
// by name.
func stringFieldInventory(roots []protoreflect.MessageDescriptor) []stringField {
	seen := map[protoreflect.FullName]bool{}
	var out []stringField
	var visit func(md protoreflect.MessageDescriptor)
	visit = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if fd.IsMap() {
				if fd.MapKey().Kind() == protoreflect.StringKind {
					out = append(out, stringField{fd, "[key]"})
				}
				if fd.MapValue().Kind() == protoreflect.StringKind {
					out = append(out, stringField{fd, "[value]"})
				}
				if m := fd.MapValue().Message(); m != nil {
					visit(m)
				}
				continue
			}
			if fd.Kind() == protoreflect.StringKind {
				out = append(out, stringField{fd: fd})
			}
			if m := fd.Message(); m != nil {
				visit(m)
			}
		}
	}
	for _, md := range roots {
		visit(md)
	}
	slices.SortFunc(out, func(a, b stringField) int { return strings.Compare(a.name(), b.name()) })
	return out
}

// TestTextFieldsClassified: every string field of the API has a rule, and every rule names a string field of the API
// (a typo or a field removed by an update would otherwise sit in the table, deciding nothing).
func TestTextFieldsClassified(t *testing.T) {
	t.Parallel()
	inv := stringFieldInventory(textFieldRoots(t))
	var missing []string
	listed := map[string]bool{}
	for _, s := range inv {
		listed[s.name()] = true
		if textRuleOf(s.fd, s.part).class == textUnclassified {
			missing = append(missing, s.name())
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d string fields are not classified in textFields (proxy/textfields.go); decide each:\n%s", len(missing), strings.Join(missing, "\n"))
	}
	var stale []string
	for msg, fields := range textFields {
		for f, r := range fields {
			if !listed[string(msg)+"."+f] {
				stale = append(stale, string(msg)+"."+f)
			}
			if r.why == "" || r.class == textUnclassified {
				t.Errorf("%s.%s: rule without class or reason", msg, f)
			}
		}
	}
	if len(stale) > 0 {
		slices.Sort(stale)
		t.Errorf("textFields lists %d fields that are not string fields of the API:\n%s", len(stale), strings.Join(stale, "\n"))
	}
}

// TestSealedTextFieldsShape: the proxy seals only singular strings and map values; a sealed map key would change
// the key the server indexes by, and a sealed repeated field has no use yet.
func TestSealedTextFieldsShape(t *testing.T) {
	t.Parallel()
	for _, s := range stringFieldInventory(textFieldRoots(t)) {
		if textRuleOf(s.fd, s.part).class != textSealed {
			continue
		}
		if s.part == "[key]" || (s.part == "" && s.fd.IsList()) {
			t.Errorf("%s is sealed, but only singular strings and map values can be", s.name())
		}
	}
}

// goldenTextFields renders the inventory: one line per field, with its class and reason.
func goldenTextFields(inv []stringField) string {
	var b strings.Builder
	b.WriteString("# Every string field of the Temporal API that passes the proxy, with what the proxy does with it.\n")
	b.WriteString("# Generated from proxy/textfields.go by: go test -tags nodevstack ./proxy/ -run TestTextFieldsGolden -update\n")
	b.WriteString("# field\tclass\treason\n")
	for _, s := range inv {
		r := textRuleOf(s.fd, s.part)
		rep := ""
		if s.part == "" && s.fd.IsList() {
			rep = " (repeated)"
		}
		fmt.Fprintf(&b, "%s%s\t%s\t%s\n", s.name(), rep, r.class, r.why)
	}
	return b.String()
}

// TestTextFieldsGolden compares the inventory with testdata/text-fields.golden, which the docs point to.
func TestTextFieldsGolden(t *testing.T) {
	t.Parallel()
	got := goldenTextFields(stringFieldInventory(textFieldRoots(t)))
	path := filepath.FromSlash(textFieldsGolden)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s is out of date; regenerate with: go test -tags nodevstack ./proxy/ -run TestTextFieldsGolden -update\n%s", textFieldsGolden, lineDiff(string(want), got))
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
