// Package sluice is the Go client of the sluice rate-limit sidecar: ask it before doing something
// limited (Acquire), and give back what a permit holds (Release, Settle).
//
//	client, err := sluice.NewClient("") // SLUICE_ADDR, else 127.0.0.1:50051
//	permit, err := client.Acquire(ctx, "openai", map[string]string{"tenant": "acme"}, sluice.WithCost(1200))
//	var denied *sluice.Denied
//	if errors.As(err, &denied) { ... denied.RetryAfter ... }
//	defer permit.Release(ctx)
//
// The generated gRPC code for the whole API is in the sluicev1 package.
package sluice

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sluice/sluice/clients/go/sluicev1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultTarget is where a Client connects when neither its target nor SLUICE_ADDR names one.
const DefaultTarget = "127.0.0.1:50051"

// DefaultTimeout is how long a call whose context has no deadline may take beyond its max_wait.
const DefaultTimeout = 5 * time.Second

// Client calls one sidecar over one connection. It is safe for concurrent use.
type Client struct {
	target        string
	conn          *grpc.ClientConn
	rpc           sluicev1.RateLimiterClient
	onUnavailable Fallback
	timeout       time.Duration
}

// NewClient connects to the sidecar at target (host:port or unix:/path.sock); an empty target
// means the environment variable SLUICE_ADDR, else DefaultTarget. It does not wait for the
// connection: a sidecar that cannot be reached shows in the first call.
func NewClient(target string, opts ...Option) (*Client, error) {
	if target == "" {
		target = os.Getenv("SLUICE_ADDR")
	}
	if target == "" {
		target = DefaultTarget
	}
	c := &Client{target: target, timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(c)
	}
	// grpc.Dial with grpc.WithInsecure, not grpc.NewClient with insecure.NewCredentials: the
	// newer two are missing from grpc-go 1.33 (Debian's), while current grpc-go still has the
	// older two, deprecated but "supported throughout 1.x". Dial also keeps the passthrough
	// resolver, so the target is dialled as written. The sidecar speaks plaintext on localhost.
	conn, err := grpc.Dial(target, grpc.WithInsecure())
	if err != nil {
		return nil, fmt.Errorf("sluice: connecting to %s: %w", target, err)
	}
	c.conn = conn
	c.rpc = sluicev1.NewRateLimiterClient(conn)
	return c, nil
}

// Target is the address the client connects to.
func (c *Client) Target() string {
	return c.target
}

// Close closes the connection; calls under way end with codes.Canceled.
func (c *Client) Close() error {
	return c.conn.Close()
}

// Acquire asks for a grant on resource, in the scope its descriptors name (every key the
// resource lists must be present). ctx cancels the call; a request that waits (WithMaxWait)
// leaves the line when ctx is done, charged nothing.
//
// A grant returns a Permit. A denial returns a *Denied error (use errors.As). A sidecar that
// cannot be reached, or does not answer within max_wait plus the client's Timeout when ctx has
// no deadline, gives what OnUnavailable says. Every other failure is the gRPC error as it came
// (status.Code works on it): INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED (a full line or an
// overloaded sidecar), and codes.Canceled or codes.DeadlineExceeded when ctx ended the call.
func (c *Client) Acquire(ctx context.Context, resource string, descriptors map[string]string, opts ...AcquireOption) (*Permit, error) {
	req := &sluicev1.AcquireRequest{Resource: resource, Descriptors: descriptors}
	for _, opt := range opts {
		opt(req)
	}
	ctx, ownDeadline, cancel := c.bounded(ctx, req.GetMaxWait().AsDuration())
	defer cancel()
	res, err := c.rpc.Acquire(ctx, req)
	if err != nil {
		if unreachable(err, ownDeadline) {
			return c.unavailable(err)
		}
		return nil, err
	}
	if !res.GetGranted() {
		return nil, deniedBy(res)
	}
	return grantedBy(res, c), nil
}

// bounded gives a context without a deadline one, wait plus the client's timeout away: a sidecar
// that never answers must not hold its caller forever. ownDeadline says it did.
func (c *Client) bounded(ctx context.Context, wait time.Duration) (_ context.Context, ownDeadline bool, _ context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, false, func() {}
	}
	ctx, cancel := context.WithTimeout(ctx, wait+c.timeout)
	return ctx, true, cancel
}

// unreachable says whether err means the sidecar could not be reached or did not answer in time.
// A deadline that was the caller's own is the caller's business, not the sidecar's.
func unreachable(err error, ownDeadline bool) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		return ownDeadline
	}
	return false
}

func (c *Client) unavailable(err error) (*Permit, error) {
	switch c.onUnavailable {
	case Open:
		return &Permit{DecidedBy: DecidedByClientOpen}, nil
	case Closed:
		return nil, &Denied{
			DecidedBy: DecidedByClientClosed,
			Reason:    "sidecar unavailable: " + status.Convert(err).Message(),
			cause:     err,
		}
	}
	return nil, err
}
