package sluice

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sluice/sluice/clients/go/sluicev1"
)

// ErrUnknownPermit is what Release and Settle return when the sidecar answers that the permit
// is unknown, expired or already released; nothing changed then.
var ErrUnknownPermit = errors.New("sluice: permit unknown, expired or already released")

// Permit is a grant. When PermitID is set, it holds something to give back: concurrency slots
// (Release frees them) or a bill to settle (Settle). Release or Settle it once; a permit not
// given back is reclaimed by the sidecar after the limit's ttl or the resource's settle_within.
type Permit struct {
	// PermitID is set when there is something to release or settle.
	PermitID string
	// Remaining is what the deciding limit has left after this grant.
	Remaining uint64
	// Limit is the deciding limit's capacity.
	Limit uint64
	// ResetAfter is the time until the deciding limit is full again if nothing more is taken.
	ResetAfter time.Duration
	// LimitName is the limit with the least left.
	LimitName string
	// DecidedBy says who granted it.
	DecidedBy DecidedBy
	// Waited is the time spent in line (WithMaxWait); 0 when the request did not wait.
	Waited time.Duration

	client *Client
	mu     sync.Mutex
	done   bool
}

func grantedBy(res *sluicev1.AcquireResponse, c *Client) *Permit {
	return &Permit{
		PermitID:   res.GetPermitId(),
		Remaining:  res.GetRemaining(),
		Limit:      res.GetLimit(),
		ResetAfter: res.GetResetAfter().AsDuration(),
		LimitName:  res.GetLimitName(),
		DecidedBy:  decidedBy(res.GetDecidedBy()),
		Waited:     res.GetWaited().AsDuration(),
		client:     c,
	}
}

// Release gives the permit back: its concurrency slots are freed, and its charge stays as it is.
func (p *Permit) Release(ctx context.Context) error {
	return p.giveBack(ctx, &sluicev1.ReleaseRequest{PermitId: p.PermitID})
}

// Settle gives the permit back with its real cost: the difference from what was acquired is
// refunded to, or charged to, every limit that counted the cost.
func (p *Permit) Settle(ctx context.Context, actual uint64) error {
	return p.giveBack(ctx, &sluicev1.ReleaseRequest{PermitId: p.PermitID, ActualCost: &actual})
}

// giveBack sends the permit's one Release. The first call the sidecar answers ends the permit:
// later calls do nothing and return nil, so a deferred Release after a Settle is harmless. A
// call that fails (the sidecar unreachable, ctx done) leaves the permit held, to be tried again.
// A permit without a PermitID has nothing to give back.
func (p *Permit) giveBack(ctx context.Context, req *sluicev1.ReleaseRequest) error {
	if p.PermitID == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return nil
	}
	ctx, _, cancel := p.client.bounded(ctx, 0)
	defer cancel()
	res, err := p.client.rpc.Release(ctx, req)
	if err != nil {
		return err
	}
	p.done = true
	if !res.GetReleased() {
		return ErrUnknownPermit
	}
	return nil
}
