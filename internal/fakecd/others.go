package fakecd

import (
	"context"
	"sort"
	"strings"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	"github.com/containerd/containerd/filters"
	"github.com/containerd/containerd/protobuf"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// AddContainer puts a container record (runc v2 runtime, no spec) into the
// table, so LoadContainer finds a container whose task AddTask made.
func (s *Server) AddContainer(ns, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := protobuf.ToTimestamp(time.Now().UTC())
	if s.ctrs[ns] == nil {
		s.ctrs[ns] = map[string]*containersapi.Container{}
	}
	s.ctrs[ns][id] = &containersapi.Container{
		ID:        id,
		Runtime:   &containersapi.Container_Runtime{Name: "io.containerd.runc.v2"},
		CreatedAt: now,
		UpdatedAt: now,
	}
}

// containerService keeps container records in memory, by namespace.
type containerService struct {
	containersapi.UnimplementedContainersServer
	s *Server
}

func containerNotFound(ns, id string) error {
	return status.Errorf(codes.NotFound, "container %q in namespace %q: not found", id, ns)
}

// Get answers one record.
func (cs *containerService) Get(ctx context.Context, r *containersapi.GetContainerRequest) (*containersapi.GetContainerResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	cs.s.mu.Lock()
	defer cs.s.mu.Unlock()
	c := cs.s.ctrs[ns][r.ID]
	if c == nil {
		return nil, containerNotFound(ns, r.ID)
	}
	return &containersapi.GetContainerResponse{Container: proto.Clone(c).(*containersapi.Container)}, nil
}

// containerAdaptor exposes the fields containerd's container filters use.
func containerAdaptor(c *containersapi.Container) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "id":
			return c.ID, c.ID != ""
		case "image":
			return c.Image, c.Image != ""
		case "snapshotter":
			return c.Snapshotter, c.Snapshotter != ""
		case "runtime":
			if len(fp) == 2 && fp[1] == "name" && c.Runtime != nil {
				return c.Runtime.Name, c.Runtime.Name != ""
			}
		case "labels":
			v, ok := c.Labels[strings.Join(fp[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

// list answers the namespace's records matching fs, by ID.
func (cs *containerService) list(ctx context.Context, fs []string) ([]*containersapi.Container, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	f, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	cs.s.mu.Lock()
	var out []*containersapi.Container
	for _, c := range cs.s.ctrs[ns] {
		if f.Match(containerAdaptor(c)) {
			out = append(out, proto.Clone(c).(*containersapi.Container))
		}
	}
	cs.s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// List answers the matching records.
func (cs *containerService) List(ctx context.Context, r *containersapi.ListContainersRequest) (*containersapi.ListContainersResponse, error) {
	out, err := cs.list(ctx, r.Filters)
	if err != nil {
		return nil, err
	}
	return &containersapi.ListContainersResponse{Containers: out}, nil
}

// ListStream sends the matching records one by one (the client's first
// choice).
func (cs *containerService) ListStream(r *containersapi.ListContainersRequest, srv containersapi.Containers_ListStreamServer) error {
	out, err := cs.list(srv.Context(), r.Filters)
	if err != nil {
		return err
	}
	for _, c := range out {
		if err := srv.Send(&containersapi.ListContainerMessage{Container: c}); err != nil {
			return err
		}
	}
	return nil
}

// Create stores a new record and publishes /containers/create.
func (cs *containerService) Create(ctx context.Context, r *containersapi.CreateContainerRequest) (*containersapi.CreateContainerResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	if r.Container == nil || r.Container.ID == "" {
		return nil, status.Errorf(codes.InvalidArgument, "container id must not be empty")
	}
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ctrs[ns][r.Container.ID]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "container %q: already exists", r.Container.ID)
	}
	c := proto.Clone(r.Container).(*containersapi.Container)
	now := protobuf.ToTimestamp(time.Now().UTC())
	c.CreatedAt, c.UpdatedAt = now, now
	if s.ctrs[ns] == nil {
		s.ctrs[ns] = map[string]*containersapi.Container{}
	}
	s.ctrs[ns][c.ID] = c
	ev := &eventtypes.ContainerCreate{ID: c.ID, Image: c.Image}
	if c.Runtime != nil {
		ev.Runtime = &eventtypes.ContainerCreate_Runtime{Name: c.Runtime.Name, Options: c.Runtime.Options}
	}
	s.publishLocked(ns, "/containers/create", ev)
	return &containersapi.CreateContainerResponse{Container: proto.Clone(c).(*containersapi.Container)}, nil
}

// Update applies the fields the mask names ("labels", "labels.KEY",
// "extensions", "extensions.KEY", "image", "spec", "snapshotkey", "sandbox"),
// or every mutable field without a mask, and publishes /containers/update.
func (cs *containerService) Update(ctx context.Context, r *containersapi.UpdateContainerRequest) (*containersapi.UpdateContainerResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	if r.Container == nil {
		return nil, status.Errorf(codes.InvalidArgument, "container must not be empty")
	}
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.ctrs[ns][r.Container.ID]
	if c == nil {
		return nil, containerNotFound(ns, r.Container.ID)
	}
	next := proto.Clone(c).(*containersapi.Container)
	in := r.Container
	paths := []string{"labels", "extensions", "image", "spec", "snapshotkey", "sandbox"}
	if r.UpdateMask != nil && len(r.UpdateMask.Paths) > 0 {
		paths = r.UpdateMask.Paths
	}
	for _, p := range paths {
		switch {
		case p == "labels":
			next.Labels = in.Labels
		case strings.HasPrefix(p, "labels."):
			k := strings.TrimPrefix(p, "labels.")
			if v, ok := in.Labels[k]; ok {
				if next.Labels == nil {
					next.Labels = map[string]string{}
				}
				next.Labels[k] = v
			} else {
				delete(next.Labels, k)
			}
		case p == "extensions":
			next.Extensions = in.Extensions
		case strings.HasPrefix(p, "extensions."):
			k := strings.TrimPrefix(p, "extensions.")
			if v, ok := in.Extensions[k]; ok {
				if next.Extensions == nil {
					next.Extensions = map[string]*anypb.Any{}
				}
				next.Extensions[k] = v
			} else {
				delete(next.Extensions, k)
			}
		case p == "image":
			next.Image = in.Image
		case p == "spec":
			next.Spec = in.Spec
		case p == "snapshotkey":
			next.SnapshotKey = in.SnapshotKey
		case p == "sandbox":
			next.Sandbox = in.Sandbox
		default:
			return nil, status.Errorf(codes.InvalidArgument, "cannot update %q field on %q", p, c.ID)
		}
	}
	next = proto.Clone(next).(*containersapi.Container)
	next.UpdatedAt = protobuf.ToTimestamp(time.Now().UTC())
	s.ctrs[ns][c.ID] = next
	s.publishLocked(ns, "/containers/update", &eventtypes.ContainerUpdate{
		ID: next.ID, Image: next.Image, Labels: next.Labels, SnapshotKey: next.SnapshotKey,
	})
	return &containersapi.UpdateContainerResponse{Container: proto.Clone(next).(*containersapi.Container)}, nil
}

// Delete removes a record and publishes /containers/delete; like containerd
// it does not look at the task.
func (cs *containerService) Delete(ctx context.Context, r *containersapi.DeleteContainerRequest) (*emptypb.Empty, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ctrs[ns][r.ID]; !ok {
		return nil, containerNotFound(ns, r.ID)
	}
	delete(s.ctrs[ns], r.ID)
	s.publishLocked(ns, "/containers/delete", &eventtypes.ContainerDelete{ID: r.ID})
	return &emptypb.Empty{}, nil
}

// leaseService keeps leases (and their resources) in memory, by namespace.
type leaseService struct {
	leasesapi.UnimplementedLeasesServer
	s *Server
}

// Create stores a lease; an empty ID is refused as the client always sends
// one.
func (ls *leaseService) Create(ctx context.Context, r *leasesapi.CreateRequest) (*leasesapi.CreateResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	if r.ID == "" {
		return nil, status.Errorf(codes.InvalidArgument, "lease id must not be empty")
	}
	s := ls.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[ns][r.ID]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "lease %q: already exists", r.ID)
	}
	l := &leasesapi.Lease{ID: r.ID, CreatedAt: protobuf.ToTimestamp(time.Now().UTC()), Labels: r.Labels}
	if s.leases[ns] == nil {
		s.leases[ns] = map[string]*leasesapi.Lease{}
	}
	s.leases[ns][r.ID] = l
	return &leasesapi.CreateResponse{Lease: proto.Clone(l).(*leasesapi.Lease)}, nil
}

// Delete removes a lease.
func (ls *leaseService) Delete(ctx context.Context, r *leasesapi.DeleteRequest) (*emptypb.Empty, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	s := ls.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[ns][r.ID]; !ok {
		return nil, status.Errorf(codes.NotFound, "lease %q: not found", r.ID)
	}
	delete(s.leases[ns], r.ID)
	delete(ls.s.leaseRes, ns+"/"+r.ID)
	return &emptypb.Empty{}, nil
}

// List answers every lease of the namespace, by ID (filters ignored).
func (ls *leaseService) List(ctx context.Context, _ *leasesapi.ListRequest) (*leasesapi.ListResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	s := ls.s
	s.mu.Lock()
	out := make([]*leasesapi.Lease, 0, len(s.leases[ns]))
	for _, l := range s.leases[ns] {
		out = append(out, proto.Clone(l).(*leasesapi.Lease))
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return &leasesapi.ListResponse{Leases: out}, nil
}

// lease answers the key of an existing lease, with s.mu held by the caller.
func (ls *leaseService) lease(ns, id string) (string, error) {
	if _, ok := ls.s.leases[ns][id]; !ok {
		return "", status.Errorf(codes.NotFound, "lease %q: not found", id)
	}
	return ns + "/" + id, nil
}

// AddResource records a resource on a lease.
func (ls *leaseService) AddResource(ctx context.Context, r *leasesapi.AddResourceRequest) (*emptypb.Empty, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	ls.s.mu.Lock()
	defer ls.s.mu.Unlock()
	key, err := ls.lease(ns, r.ID)
	if err != nil {
		return nil, err
	}
	if r.Resource == nil {
		return nil, status.Errorf(codes.InvalidArgument, "resource must not be empty")
	}
	ls.s.leaseRes[key] = append(ls.s.leaseRes[key], proto.Clone(r.Resource).(*leasesapi.Resource))
	return &emptypb.Empty{}, nil
}

// DeleteResource forgets a resource of a lease.
func (ls *leaseService) DeleteResource(ctx context.Context, r *leasesapi.DeleteResourceRequest) (*emptypb.Empty, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	ls.s.mu.Lock()
	defer ls.s.mu.Unlock()
	key, err := ls.lease(ns, r.ID)
	if err != nil {
		return nil, err
	}
	kept := ls.s.leaseRes[key][:0]
	for _, res := range ls.s.leaseRes[key] {
		if r.Resource == nil || res.ID != r.Resource.ID || res.Type != r.Resource.Type {
			kept = append(kept, res)
		}
	}
	ls.s.leaseRes[key] = kept
	return &emptypb.Empty{}, nil
}

// ListResources answers a lease's resources.
func (ls *leaseService) ListResources(ctx context.Context, r *leasesapi.ListResourcesRequest) (*leasesapi.ListResourcesResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	ls.s.mu.Lock()
	defer ls.s.mu.Unlock()
	key, err := ls.lease(ns, r.ID)
	if err != nil {
		return nil, err
	}
	out := &leasesapi.ListResourcesResponse{}
	for _, res := range ls.s.leaseRes[key] {
		out.Resources = append(out.Resources, proto.Clone(res).(*leasesapi.Resource))
	}
	return out, nil
}

// namespaceService answers for every namespace: unlike containerd's, Get
// never answers NotFound, so clients may use any namespace without creating
// it first.
type namespaceService struct {
	namespacesapi.UnimplementedNamespacesServer
	s *Server
}

func copyLabels(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// Get answers the namespace with the labels set on it, if any.
func (ns *namespaceService) Get(_ context.Context, r *namespacesapi.GetNamespaceRequest) (*namespacesapi.GetNamespaceResponse, error) {
	ns.s.mu.Lock()
	defer ns.s.mu.Unlock()
	return &namespacesapi.GetNamespaceResponse{Namespace: &namespacesapi.Namespace{Name: r.Name, Labels: copyLabels(ns.s.nsLabels[r.Name])}}, nil
}

// List answers every namespace that has tasks, containers, leases or labels.
func (ns *namespaceService) List(context.Context, *namespacesapi.ListNamespacesRequest) (*namespacesapi.ListNamespacesResponse, error) {
	s := ns.s
	s.mu.Lock()
	names := map[string]bool{}
	for n := range s.tasks {
		names[n] = true
	}
	for n := range s.ctrs {
		names[n] = true
	}
	for n := range s.leases {
		names[n] = true
	}
	for n := range s.nsLabels {
		names[n] = true
	}
	out := &namespacesapi.ListNamespacesResponse{}
	for n := range names {
		out.Namespaces = append(out.Namespaces, &namespacesapi.Namespace{Name: n, Labels: copyLabels(s.nsLabels[n])})
	}
	s.mu.Unlock()
	sort.Slice(out.Namespaces, func(i, j int) bool { return out.Namespaces[i].Name < out.Namespaces[j].Name })
	return out, nil
}

// Create records a namespace's labels.
func (ns *namespaceService) Create(_ context.Context, r *namespacesapi.CreateNamespaceRequest) (*namespacesapi.CreateNamespaceResponse, error) {
	if r.Namespace == nil || r.Namespace.Name == "" {
		return nil, status.Errorf(codes.InvalidArgument, "namespace name must not be empty")
	}
	ns.s.mu.Lock()
	defer ns.s.mu.Unlock()
	if _, ok := ns.s.nsLabels[r.Namespace.Name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "namespace %q: already exists", r.Namespace.Name)
	}
	ns.s.nsLabels[r.Namespace.Name] = copyLabels(r.Namespace.Labels)
	return &namespacesapi.CreateNamespaceResponse{Namespace: &namespacesapi.Namespace{Name: r.Namespace.Name, Labels: copyLabels(r.Namespace.Labels)}}, nil
}

// Update replaces a namespace's labels (or those the mask names as
// "labels.KEY").
func (ns *namespaceService) Update(_ context.Context, r *namespacesapi.UpdateNamespaceRequest) (*namespacesapi.UpdateNamespaceResponse, error) {
	if r.Namespace == nil || r.Namespace.Name == "" {
		return nil, status.Errorf(codes.InvalidArgument, "namespace name must not be empty")
	}
	s := ns.s
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.Namespace.Name
	labels := copyLabels(s.nsLabels[name])
	if r.UpdateMask == nil || len(r.UpdateMask.Paths) == 0 {
		labels = copyLabels(r.Namespace.Labels)
	} else {
		for _, p := range r.UpdateMask.Paths {
			k, ok := strings.CutPrefix(p, "labels.")
			if !ok {
				if p != "labels" {
					return nil, status.Errorf(codes.InvalidArgument, "cannot update %q field on namespace %q", p, name)
				}
				labels = copyLabels(r.Namespace.Labels)
				continue
			}
			if labels == nil {
				labels = map[string]string{}
			}
			if v, ok := r.Namespace.Labels[k]; ok {
				labels[k] = v
			} else {
				delete(labels, k)
			}
		}
	}
	if labels == nil {
		labels = map[string]string{}
	}
	s.nsLabels[name] = labels
	return &namespacesapi.UpdateNamespaceResponse{Namespace: &namespacesapi.Namespace{Name: name, Labels: copyLabels(labels)}}, nil
}

// Delete forgets a namespace's labels.
func (ns *namespaceService) Delete(_ context.Context, r *namespacesapi.DeleteNamespaceRequest) (*emptypb.Empty, error) {
	ns.s.mu.Lock()
	defer ns.s.mu.Unlock()
	delete(ns.s.nsLabels, r.Name)
	return &emptypb.Empty{}, nil
}
