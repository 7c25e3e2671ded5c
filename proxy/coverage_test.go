package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/api/errordetails/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	updatepb "go.temporal.io/api/update/v1"
)

const (
	payloadName          protoreflect.FullName = "temporal.api.common.v1.Payload"
	failureName          protoreflect.FullName = "temporal.api.failure.v1.Failure"
	searchAttributesName protoreflect.FullName = "temporal.api.common.v1.SearchAttributes"
	anyName              protoreflect.FullName = "google.protobuf.Any"
)

// anyBodies are what the tests put into Any fields. In the API, Any appears in protocol.v1.Message.body (update
// protocol messages) and in error details; every message that can carry a payload or failure there is listed.
var anyBodies = []proto.Message{
	&updatepb.Request{}, &updatepb.Response{}, &updatepb.Rejection{}, &updatepb.Acceptance{},
	&errordetails.QueryFailedFailure{}, &errordetails.MultiOperationExecutionFailure{},
}

// sensitivity says whether messages of a type can (transitively) hold a payload or a failure, outside search
// attributes. It is a least fixpoint over every type reachable from those asked about, so cycles are handled.
type sensitivity map[protoreflect.FullName]bool

func (s sensitivity) of(md protoreflect.MessageDescriptor) bool {
	if v, ok := s[md.FullName()]; ok {
		return v
	}
	all := map[protoreflect.FullName]protoreflect.MessageDescriptor{}
	var discover func(protoreflect.MessageDescriptor)
	discover = func(md protoreflect.MessageDescriptor) {
		if _, ok := all[md.FullName()]; ok {
			return
		}
		all[md.FullName()] = md
		for _, fd := range messageFields(md) {
			discover(fd)
		}
	}
	discover(md)
	for name := range all {
		if _, ok := s[name]; !ok {
			s[name] = name == payloadName || name == failureName || name == anyName
		}
	}
	for changed := true; changed; {
		changed = false
		for name, d := range all {
			if s[name] || name == searchAttributesName {
				continue
			}
			for _, fd := range messageFields(d) {
				if s[fd.FullName()] {
					s[name], changed = true, true
					break
				}
			}
		}
	}
	return s[md.FullName()]
}

// messageFields returns the message types of md's fields (map values included).
func messageFields(md protoreflect.MessageDescriptor) []protoreflect.MessageDescriptor {
	var out []protoreflect.MessageDescriptor
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Message() != nil {
			out = append(out, fd.Message())
		}
	}
	return out
}

// filler plants a distinct marker in every payload (data and metadata) and every failure's message and stack trace it
// can reach. Of each oneof it sets the member number variant (mod the oneof's size), so running variants 0..n covers
// every member; it records which members it set so the caller knows when to stop.
type filler struct {
	sens    sensitivity
	variant int
	n       int
	path    map[protoreflect.FullName]int
	covered map[protoreflect.FullName]bool // oneof members set so far, over all variants
	newHit  bool
	markers []string
	where   []string // where[i] is the field path of markers[i]
	stack   []string
}

func (f *filler) marker() string {
	f.n++
	m := fmt.Sprintf("%s%05dX", markerPrefix, f.n)
	f.markers = append(f.markers, m)
	f.where = append(f.where, strings.Join(f.stack, "."))
	return m
}

func (f *filler) fill(m protoreflect.Message) {
	md := m.Descriptor()
	switch md.FullName() {
	case payloadName:
		m.Set(md.Fields().ByName("data"), protoreflect.ValueOfBytes([]byte(`"`+f.marker()+`"`)))
		meta := m.Mutable(md.Fields().ByName("metadata")).Map()
		meta.Set(protoreflect.ValueOfString("encoding").MapKey(), protoreflect.ValueOfBytes([]byte("json/plain")))
		meta.Set(protoreflect.ValueOfString("note").MapKey(), protoreflect.ValueOfBytes([]byte(f.marker())))
		return
	case anyName:
		body := anyBodies[f.variant%len(anyBodies)].ProtoReflect().New()
		f.fill(body)
		a, err := anypb.New(body.Interface())
		if err != nil {
			panic(err)
		}
		proto.Merge(m.Interface(), a)
		return
	case failureName:
		m.Set(md.Fields().ByName("message"), protoreflect.ValueOfString(f.marker()))
		m.Set(md.Fields().ByName("stack_trace"), protoreflect.ValueOfString(f.marker()))
	}
	f.path[md.FullName()]++
	defer func() { f.path[md.FullName()]-- }()

	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if md.FullName() == failureName && fd.Name() == "encoded_attributes" {
			continue // a failure with both text and attributes is refused; covered by its own test
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			pick := od.Fields().Get(f.variant % od.Fields().Len())
			if pick != fd {
				continue
			}
			if !f.covered[fd.FullName()] {
				f.covered[fd.FullName()] = true
				f.newHit = true
			}
		}
		f.stack = append(f.stack, string(fd.Name()))
		f.fillField(m, fd)
		f.stack = f.stack[:len(f.stack)-1]
	}
}

func (f *filler) fillField(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
	{
		vd := fd
		if fd.IsMap() {
			vd = fd.MapValue()
		}
		if vd.Message() == nil || !f.sens.of(vd.Message()) {
			return
		}
		if f.path[vd.Message().FullName()] >= 2 {
			return // bounded recursion (failure causes, nested histories)
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			v := mp.NewValue()
			f.fill(v.Message())
			mp.Set(protoreflect.ValueOfString("k-"+string(fd.Name())).MapKey(), v)
		case fd.IsList():
			l := m.Mutable(fd).List()
			v := l.NewElement()
			f.fill(v.Message())
			l.Append(v)
		default:
			f.fill(m.Mutable(fd).Message())
		}
	}
}

// workflowServiceMessages lists the request and response types of every WorkflowService method.
func workflowServiceMessages(t *testing.T) []protoreflect.MessageType {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(workflowServiceName)
	if err != nil {
		t.Fatal(err)
	}
	methods := d.(protoreflect.ServiceDescriptor).Methods()
	var out []protoreflect.MessageType
	for i := 0; i < methods.Len(); i++ {
		for _, md := range []protoreflect.MessageDescriptor{methods.Get(i).Input(), methods.Get(i).Output()} {
			mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, mt)
		}
	}
	return out
}

// TestEveryFieldEncrypted proves coverage per field: for each WorkflowService request and response type that can carry
// a payload or failure, it plants a marker in every such field (all oneof members, over variants), runs the proxy's
// encode path, and requires that no marker is left in the marshalled message; then it runs the decode path and requires
// the exact original back. New API fields are picked up automatically.
func TestEveryFieldEncrypted(t *testing.T) {
	real, _ := newTestCodec(t)
	for name, c := range map[string]PayloadCodec{"codec": real, "xor": xorCodec{}} {
		t.Run(name, func(t *testing.T) { testEveryFieldEncrypted(t, &transformer{codec: c}) })
	}
}

func testEveryFieldEncrypted(t *testing.T, tr *transformer) {
	ctx := context.Background()
	sens := sensitivity{}
	checked, total := 0, 0
	for _, mt := range workflowServiceMessages(t) {
		if !sens.of(mt.Descriptor()) {
			continue
		}
		checked++
		name := string(mt.Descriptor().Name())
		covered := map[protoreflect.FullName]bool{}
		planted := 0
		for variant := 0; ; variant++ {
			f := &filler{sens: sens, variant: variant, path: map[protoreflect.FullName]int{}, covered: covered}
			msg := mt.New().Interface()
			f.fill(msg.ProtoReflect())
			if variant > 0 && !f.newHit {
				break
			}
			if _, ok := msg.(interface{ GetNamespace() string }); ok {
				// Make sure a namespace is set for the types that have one; the others carry no payload fields.
				if fd := msg.ProtoReflect().Descriptor().Fields().ByName("namespace"); fd != nil {
					msg.ProtoReflect().Set(fd, protoreflect.ValueOfString("ns1"))
				}
			}
			if len(f.markers) == 0 {
				continue // this variant picked oneof members without payloads
			}
			planted += len(f.markers)
			orig := proto.Clone(msg)
			if err := tr.encodeRequest(ctx, "ns1", msg); err != nil {
				t.Fatalf("%s variant %d: encode: %v", name, variant, err)
			}
			if containsMarker(msg) {
				t.Errorf("%s variant %d: a marker survived encoding: %s", name, variant, leakedMarkers(msg, f))
			}
			if err := tr.decodeResponse(ctx, "ns1", msg); err != nil {
				t.Fatalf("%s variant %d: decode: %v", name, variant, err)
			}
			if !proto.Equal(normalized(orig), normalized(msg)) {
				t.Errorf("%s variant %d: decode did not restore the original", name, variant)
			}
		}
		if planted == 0 {
			t.Errorf("%s: the filler planted no marker in any variant", name)
		}
		total += planted
	}
	if checked < 40 {
		t.Fatalf("only %d message types carry payloads; the walk is broken", checked)
	}
	t.Logf("checked %d message types, %d markers", checked, total)
}

// leakedMarkers names the fields (by path) whose markers are still in m's bytes.
func leakedMarkers(m proto.Message, f *filler) []string {
	b, _ := proto.Marshal(m)
	var out []string
	for i, mk := range f.markers {
		if strings.Contains(string(b), mk) {
			out = append(out, f.where[i])
		}
	}
	return out
}

// TestEveryErrorDetailDecoded: every error detail type of the API that can carry a payload or failure is decrypted
// (and its failure text restored) when it comes back inside an upstream error.
func TestEveryErrorDetailDecoded(t *testing.T) {
	ctx := context.Background()
	c, _ := newTestCodec(t)
	tr := &transformer{codec: c}
	sens := sensitivity{}
	fd := (&errordetails.QueryFailedFailure{}).ProtoReflect().Descriptor().ParentFile()
	checked := 0
	for i := 0; i < fd.Messages().Len(); i++ {
		md := fd.Messages().Get(i)
		if !sens.of(md) {
			continue
		}
		checked++
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
		if err != nil {
			t.Fatal(err)
		}
		f := &filler{sens: sens, path: map[protoreflect.FullName]int{}, covered: map[protoreflect.FullName]bool{}}
		detail := mt.New().Interface()
		f.fill(detail.ProtoReflect())
		orig := proto.Clone(detail)
		// Seal it as the proxy seals requests, as if the upstream had stored what a worker sent.
		if err := tr.encodeRequest(ctx, "ns1", detail); err != nil {
			t.Fatal(err)
		}
		a, err := anypb.New(detail)
		if err != nil {
			t.Fatal(err)
		}
		st := status.FromProto(&spb.Status{Code: int32(codes.FailedPrecondition), Message: "x", Details: []*anypb.Any{a}})
		if containsMarker(st.Proto()) {
			t.Fatalf("%s: marker in sealed detail", md.Name())
		}
		out, err := tr.decodeStatus(ctx, "ns1", st.Err())
		if err != nil {
			t.Fatalf("%s: %v", md.Name(), err)
		}
		got := status.Convert(out).Details()
		if len(got) != 1 || !proto.Equal(normalized(got[0].(proto.Message)), normalized(orig)) {
			t.Errorf("%s: not restored: %v", md.Name(), got)
		}
	}
	if checked < 2 {
		t.Fatalf("only %d error detail types carry payloads", checked)
	}
}
