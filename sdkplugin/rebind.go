package sdkplugin

import (
	"context"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	apiproxy "go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
)

// Two values leave the SDK under a serialization context that names something else than where the backend will
// deliver them, so the binding the codec chose would be refused there (by a plugin worker and by the proxy alike):
//
//   - A schedule's action: the SDK seals its input, memo and header in the context of the action's workflow id, but
//     the server starts "<id>-<scheduled time>". They are re-sealed for codec.BindScheduledWorkflow(id).
//   - A Nexus handler's answer (a synchronous result, an operation failure, a handler error): sealed in the handler's
//     Nexus context, BindNexus("<service>/<operation>"), the binding of the operation's input; the caller's side
//     expects BindNexus(""), a result. They are re-sealed for that, so a handler's answer is never taken for an input.
//
// The gRPC interceptor re-seals them in the request before it is sent. Only a plugin with local keys can: a remote
// plugin's envelopes carry no binding (BindNamespace), which opens everywhere.

// rebinder is implemented by backends that can open envelopes and seal them again for another binding.
type rebinder interface {
	rebind(ctx context.Context, namespace string, from func(codec.Binding) bool, to codec.Binding, ps []*commonpb.Payload) ([]*commonpb.Payload, error)
}

// rebind re-seals, for to, the envelopes of ps bound as from says; others are returned as they are.
func (l localBackend) rebind(ctx context.Context, ns string, from func(codec.Binding) bool, to codec.Binding, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	var idx []int
	for i, p := range ps {
		if b, ok := codec.BindingOf(p); ok && from(b) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return ps, nil
	}
	sel := make([]*commonpb.Payload, len(idx))
	for j, i := range idx {
		sel[j] = ps[i]
	}
	opened, err := l.c.DecodeFor(ctx, codec.Expect{Namespace: ns, Accept: func(_ int, b codec.Binding) error {
		if !from(b) {
			return fmt.Errorf("bound to %s", b)
		}
		return nil
	}}, sel)
	if err != nil {
		return nil, err
	}
	sealed, err := l.c.EncodeFor(ctx, codec.Target{Namespace: ns, Binding: to}, opened)
	if err != nil {
		return nil, err
	}
	out := make([]*commonpb.Payload, len(ps))
	copy(out, ps)
	for j, i := range idx {
		out[i] = sealed[j]
	}
	return out, nil
}

// rebindRequest re-seals what req carries for where the backend will deliver it (see above). It reports an error
// rather than send a value its receiver would refuse.
func (p *Plugin) rebindRequest(ctx context.Context, req any) error {
	rb, ok := p.codecs.backend.(rebinder)
	if !ok {
		return nil
	}
	var (
		ns   string
		msg  proto.Message
		from func(codec.Binding) bool
		to   codec.Binding
		what string
	)
	switch r := req.(type) {
	case *workflowservice.CreateScheduleRequest:
		if sw := r.GetSchedule().GetAction().GetStartWorkflow(); sw.GetWorkflowId() != "" {
			ns, msg, what = r.GetNamespace(), sw, "schedule action"
			from, to = isWorkflow(sw.GetWorkflowId()), codec.Binding{Kind: codec.BindScheduledWorkflow, ID: sw.GetWorkflowId()}
		}
	case *workflowservice.UpdateScheduleRequest:
		if sw := r.GetSchedule().GetAction().GetStartWorkflow(); sw.GetWorkflowId() != "" {
			ns, msg, what = r.GetNamespace(), sw, "schedule action"
			from, to = isWorkflow(sw.GetWorkflowId()), codec.Binding{Kind: codec.BindScheduledWorkflow, ID: sw.GetWorkflowId()}
		}
	case *workflowservice.RespondNexusTaskCompletedRequest:
		ns, msg, what, from, to = r.GetNamespace(), r, "Nexus result", isNexusInput, codec.Binding{Kind: codec.BindNexus}
	case *workflowservice.RespondNexusTaskFailedRequest:
		ns, msg, what, from, to = r.GetNamespace(), r, "Nexus failure", isNexusInput, codec.Binding{Kind: codec.BindNexus}
	}
	if msg == nil {
		return nil
	}
	if ns == "" {
		ns = p.namespace
	}
	err := apiproxy.VisitPayloads(ctx, msg, apiproxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(vc *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			return rb.rebind(vc.Context, ns, from, to, ps)
		},
	})
	if err != nil {
		return fmt.Errorf("blindfold: re-seal the %s for %s: %w", what, to, err)
	}
	return nil
}

func isWorkflow(id string) func(codec.Binding) bool {
	return func(b codec.Binding) bool { return b.Kind == codec.BindWorkflow && b.ID == id }
}

func isNexusInput(b codec.Binding) bool { return b.Kind == codec.BindNexus && b.ID != "" }
