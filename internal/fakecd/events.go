package fakecd

import (
	"context"
	"fmt"
	"strings"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	"github.com/containerd/containerd/filters"
	"github.com/containerd/containerd/protobuf"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// subscriber is one open Subscribe stream. Its fields are guarded by
// Server.mu.
type subscriber struct {
	filter filters.Filter
	queue  []*eventsapi.Envelope
	// wake has room for one signal: a pending signal is enough for the
	// handler to drain everything queued.
	wake   chan struct{}
	broken bool
}

func (sub *subscriber) signal() {
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// Publish sends an envelope of ev (typeurl-marshalled, timestamped now) on
// topic in namespace ns to the matching subscribers, after every event
// published before it. It panics if ev cannot be marshalled.
func (s *Server) Publish(ns, topic string, ev proto.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.publishLocked(ns, topic, ev)
}

func (s *Server) publishLocked(ns, topic string, ev proto.Message) {
	a, err := typeurl.MarshalAny(ev)
	if err != nil {
		panic(fmt.Sprintf("fakecd: marshal %T: %v", ev, err))
	}
	s.dispatchLocked(&eventsapi.Envelope{
		Timestamp: protobuf.ToTimestamp(time.Now().UTC()),
		Namespace: ns,
		Topic:     topic,
		Event:     protobuf.FromAny(a),
	})
}

// dispatchLocked queues env for every matching subscriber, or holds it.
func (s *Server) dispatchLocked(env *eventsapi.Envelope) {
	if s.held {
		s.heldQ = append(s.heldQ, env)
		return
	}
	for sub := range s.subs {
		if sub.filter == nil || sub.filter.Match(adapt(env)) {
			sub.queue = append(sub.queue, env)
			sub.signal()
		}
	}
}

// HoldEvents queues every event published from now on (by Publish, the
// events service or the tasks service) instead of sending it, until
// ReleaseEvents. Held events are matched against the subscriptions open at
// release, so none is lost to a stream that broke meanwhile.
func (s *Server) HoldEvents() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = true
}

// ReleaseEvents sends the held events in publish order and stops holding.
func (s *Server) ReleaseEvents() {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.heldQ
	s.held, s.heldQ = false, nil
	for _, env := range q {
		s.dispatchLocked(env)
	}
}

// DiscardEvents drops the held events and stops holding: what a containerd
// killed before it sent them would do.
func (s *Server) DiscardEvents() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held, s.heldQ = false, nil
}

// BreakStreams ends every open Subscribe with codes.Unavailable, as a
// connection lost in transit would: events queued for a stream and not yet
// sent are lost with it. Subscribers drops to 0 at once.
func (s *Server) BreakStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		sub.broken = true
		sub.signal()
		delete(s.subs, sub)
	}
}

// Subscribers is how many subscriptions are open, to let a test wait for a
// client's resubscription.
func (s *Server) Subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// adapt exposes an envelope's fields to a filter as containerd's exchange
// does (events.Envelope's Field): namespace, topic, and event.* from the
// decoded event's own field paths.
func adapt(env *eventsapi.Envelope) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "namespace":
			return env.Namespace, env.Namespace != ""
		case "topic":
			return env.Topic, env.Topic != ""
		case "event":
			v, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				return "", false
			}
			f, ok := v.(interface {
				Field([]string) (string, bool)
			})
			if !ok {
				return "", false
			}
			return f.Field(fieldpath[1:])
		}
		return "", false
	})
}

// eventService is containerd.services.events.v1 over the Server's
// subscribers.
type eventService struct {
	eventsapi.UnimplementedEventsServer
	s *Server
}

// validateTopic checks the topic's shape as containerd's exchange does, less
// the per-component identifier rules.
func validateTopic(topic string) error {
	if len(topic) < 2 || topic[0] != '/' || strings.Contains(topic, "//") {
		return status.Errorf(codes.InvalidArgument, "envelope topic %q: must start with '/' and have components", topic)
	}
	return nil
}

// Publish forwards the request's event to the subscribers in the caller's
// namespace.
func (es *eventService) Publish(ctx context.Context, r *eventsapi.PublishRequest) (*emptypb.Empty, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateTopic(r.Topic); err != nil {
		return nil, err
	}
	es.s.mu.Lock()
	defer es.s.mu.Unlock()
	es.s.dispatchLocked(&eventsapi.Envelope{
		Timestamp: protobuf.ToTimestamp(time.Now().UTC()),
		Namespace: ns,
		Topic:     r.Topic,
		Event:     r.Event,
	})
	return &emptypb.Empty{}, nil
}

// Forward sends an envelope as it is.
func (es *eventService) Forward(_ context.Context, r *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	env := r.Envelope
	if env == nil || env.Namespace == "" || env.Timestamp == nil {
		return nil, status.Errorf(codes.InvalidArgument, "envelope needs a namespace and a timestamp")
	}
	if err := validateTopic(env.Topic); err != nil {
		return nil, err
	}
	es.s.mu.Lock()
	defer es.s.mu.Unlock()
	es.s.dispatchLocked(env)
	return &emptypb.Empty{}, nil
}

// Subscribe registers a subscriber and sends it its events in order until
// the client leaves, the server stops or BreakStreams. As in containerd the
// registration happens in the handler, after the client's call returned.
func (es *eventService) Subscribe(r *eventsapi.SubscribeRequest, srv eventsapi.Events_SubscribeServer) error {
	s := es.s
	ctx := srv.Context()
	if h := s.hook("Subscribe"); h != nil {
		if _, handled, err := h(ctx, r); handled {
			return err
		}
	}
	sub := &subscriber{wake: make(chan struct{}, 1)}
	if len(r.Filters) > 0 {
		f, err := filters.ParseAll(r.Filters...)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "failed parsing subscription filters: %v", err)
		}
		sub.filter = f
	}
	s.mu.Lock()
	for gate := s.subscribeGate; gate != nil; gate = s.subscribeGate {
		s.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		s.mu.Lock()
	}
	// A stream that outlived its server (Stop cancels every context) must
	// not register: Stop may already be waiting for the active count.
	if ctx.Err() != nil {
		s.mu.Unlock()
		return status.FromContextError(ctx.Err()).Err()
	}
	s.subs[sub] = struct{}{}
	s.active++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.active--
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		q, broken := sub.queue, sub.broken
		sub.queue = nil
		s.mu.Unlock()
		if broken {
			return status.Error(codes.Unavailable, "fakecd: event stream broken")
		}
		for _, env := range q {
			if err := srv.Send(env); err != nil {
				return err
			}
		}
		select {
		case <-sub.wake:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}
