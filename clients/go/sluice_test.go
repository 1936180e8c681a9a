// These tests call a real sidecar: test/clients/go.test.ts starts one on a real Redis with the
// policy they expect, names it in SLUICE_ADDR, and checks the store at the checkpoints
// (SLUICE_TEST_CHECKPOINTS) of the cancellation test. Run there, not alone:
//
//	npx vitest run test/clients/go.test.ts
package sluice_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	sluice "github.com/sluice/sluice/clients/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// run makes this run's scopes its own, so that a rerun on the same store starts full.
var run = strconv.FormatInt(time.Now().UnixNano(), 36)

// tenant is the scope `name.run`.
func tenant(name string) map[string]string {
	return map[string]string{"tenant": name + "." + run}
}

// sidecar is a client of the sidecar SLUICE_ADDR names, through the default target.
func sidecar(t *testing.T, opts ...sluice.Option) *sluice.Client {
	t.Helper()
	if os.Getenv("SLUICE_ADDR") == "" {
		t.Skip("SLUICE_ADDR names no sidecar: run these tests with npx vitest run test/clients/go.test.ts")
	}
	return connect(t, "", opts...)
}

func connect(t *testing.T, target string, opts ...sluice.Option) *sluice.Client {
	t.Helper()
	client, err := sluice.NewClient(target, opts...)
	if err != nil {
		t.Fatalf("NewClient(%q): %v", target, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func acquire(t *testing.T, client *sluice.Client, resource string, descriptors map[string]string, opts ...sluice.AcquireOption) *sluice.Permit {
	t.Helper()
	permit, err := client.Acquire(context.Background(), resource, descriptors, opts...)
	if err != nil {
		t.Fatalf("Acquire(%s, %v): %v", resource, descriptors, err)
	}
	return permit
}

func denial(t *testing.T, err error) *sluice.Denied {
	t.Helper()
	var denied *sluice.Denied
	if !errors.As(err, &denied) {
		t.Fatalf("want a *sluice.Denied, got %v", err)
	}
	return denied
}

// closedPort is an address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentPort is an address that accepts connections and never says a word on them.
func silentPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, conn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-accepted
		for _, conn := range held {
			conn.Close()
		}
	})
	return ln.Addr().String()
}

// checkpoint tells the runner of these tests that the test reached `name` on a scope, and
// returns once the runner has checked the store there.
func checkpoint(t *testing.T, name, resource string, descriptors map[string]string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", os.Getenv("SLUICE_TEST_CHECKPOINTS"), 10*time.Second)
	if err != nil {
		t.Fatalf("checkpoint %s: SLUICE_TEST_CHECKPOINTS: %v", name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(conn, "%s %s %s\n", name, resource, descriptors["tenant"])
	answer, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || answer != "ok\n" {
		t.Fatalf("checkpoint %s: %q %v", name, answer, err)
	}
}

func TestTarget(t *testing.T) {
	t.Setenv("SLUICE_ADDR", "unix:/run/sluice.sock")
	if got := connect(t, "").Target(); got != "unix:/run/sluice.sock" {
		t.Errorf("with SLUICE_ADDR set, Target() = %q", got)
	}
	t.Setenv("SLUICE_ADDR", "")
	if got := connect(t, "").Target(); got != sluice.DefaultTarget {
		t.Errorf("without SLUICE_ADDR, Target() = %q, want %q", got, sluice.DefaultTarget)
	}
	if got := connect(t, "10.0.0.1:50051").Target(); got != "10.0.0.1:50051" {
		t.Errorf("Target() = %q, want the argument", got)
	}
}

func TestGrant(t *testing.T) {
	permit := acquire(t, sidecar(t), "minute", tenant("grant"))
	if permit.DecidedBy != sluice.DecidedByStore || permit.LimitName != "per-minute" || permit.Limit != 1 || permit.Remaining != 0 {
		t.Errorf("grant: %+v", permit)
	}
	if permit.PermitID != "" || permit.Waited != 0 {
		t.Errorf("a grant of a token bucket without settle_within that did not wait: %+v", permit)
	}
}

func TestDenial(t *testing.T) {
	client := sidecar(t)
	scope := tenant("denial")
	acquire(t, client, "minute", scope)
	_, err := client.Acquire(context.Background(), "minute", scope)
	denied := denial(t, err)
	if denied.RetryAfter <= 0 || denied.RetryAfter > time.Minute {
		t.Errorf("RetryAfter = %v, want within the minute the token takes", denied.RetryAfter)
	}
	if denied.LimitName != "per-minute" || denied.Reason == "" || denied.DecidedBy != sluice.DecidedByStore {
		t.Errorf("denial: %+v", denied)
	}

	// A cost over the bucket's burst can never fit.
	_, err = client.Acquire(context.Background(), "minute", tenant("never"), sluice.WithCost(2))
	if denied := denial(t, err); denied.RetryAfter != sluice.Never || denied.Reason == "" {
		t.Errorf("a cost that can never fit: %+v", denied)
	}
}

func TestMaxWait(t *testing.T) {
	client := sidecar(t)
	scope := tenant("wait")
	held := acquire(t, client, "slot", scope)
	type answer struct {
		permit *sluice.Permit
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		permit, err := client.Acquire(context.Background(), "slot", scope, sluice.WithMaxWait(30*time.Second))
		answered <- answer{permit, err}
	}()
	checkpoint(t, "waiting", "slot", scope)
	if err := held.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
	got := <-answered
	if got.err != nil {
		t.Fatalf("a wait for a slot that is released: %v", got.err)
	}
	permit := got.permit
	if permit.Waited <= 0 || permit.Waited > 30*time.Second || permit.PermitID == "" {
		t.Fatalf("granted after waiting: %+v", permit)
	}
	if err := permit.Release(context.Background()); err != nil {
		t.Errorf("Release: %v", err)
	}

	// A context without a deadline still ends: when max_wait passes, denied.
	acquire(t, client, "minute", tenant("wait-out"))
	started := time.Now()
	_, err := client.Acquire(context.Background(), "minute", tenant("wait-out"), sluice.WithMaxWait(300*time.Millisecond))
	if denied := denial(t, err); time.Since(started) < 300*time.Millisecond || denied.Waited <= 0 || denied.LimitName != "per-minute" {
		t.Errorf("after %v: %+v", time.Since(started), denied)
	}
}

func TestPriorityAndLane(t *testing.T) {
	client := sidecar(t)
	scope := tenant("reserve")
	// Half of the bucket (1 of 2) is kept for priority 5 and above.
	acquire(t, client, "reserved", scope)
	_, err := client.Acquire(context.Background(), "reserved", scope)
	denial(t, err)
	acquire(t, client, "reserved", scope, sluice.WithPriority(5))

	acquire(t, client, "reserved", tenant("lane"), sluice.WithLane("batch"))
	_, err = client.Acquire(context.Background(), "reserved", tenant("lane"), sluice.WithLane("no-such-lane"))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("a lane the resource does not have: %v", err)
	}
}

func TestSettle(t *testing.T) {
	client := sidecar(t)
	scope := tenant("settle")
	permit := acquire(t, client, "tokens", scope, sluice.WithCost(60))
	if permit.PermitID == "" || permit.Remaining != 40 {
		t.Fatalf("a grant on a resource with settle_within: %+v", permit)
	}
	if err := permit.Settle(context.Background(), 10); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	// Once: neither a second Settle nor a Release changes anything more.
	if err := permit.Settle(context.Background(), 100); err != nil {
		t.Errorf("second Settle: %v", err)
	}
	if err := permit.Release(context.Background()); err != nil {
		t.Errorf("Release after Settle: %v", err)
	}
	// 100 - 10 settled - 1 now: the other 50 came back, and only once.
	if next := acquire(t, client, "tokens", scope); next.Remaining != 89 {
		t.Errorf("after settling 60 as 10, Remaining = %d, want 89", next.Remaining)
	}
}

func TestRelease(t *testing.T) {
	client := sidecar(t)
	scope := tenant("release")
	first := acquire(t, client, "slot", scope)
	if first.PermitID == "" {
		t.Fatalf("a concurrency grant without a PermitID: %+v", first)
	}
	_, err := client.Acquire(context.Background(), "slot", scope)
	if denied := denial(t, err); denied.LimitName != "inflight" {
		t.Errorf("the slot is held: %+v", denied)
	}
	if err := first.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := first.Release(context.Background()); err != nil {
		t.Errorf("second Release: %v", err)
	}
	next := acquire(t, client, "slot", scope)
	if err := next.Release(context.Background()); err != nil {
		t.Errorf("Release: %v", err)
	}

	unknown := sluice.PermitFor(client, "AAAAAAAAAAAAAAAAAAAAAA")
	if err := unknown.Release(context.Background()); !errors.Is(err, sluice.ErrUnknownPermit) {
		t.Errorf("Release of a permit the sidecar does not know: %v", err)
	}
}

func TestErrorsAsTheyCome(t *testing.T) {
	// Whatever OnUnavailable says: these are answers about the request.
	client := sidecar(t, sluice.OnUnavailable(sluice.Open))
	_, err := client.Acquire(context.Background(), "no-such-resource", tenant("errors"))
	if status.Code(err) != codes.NotFound {
		t.Errorf("an unknown resource: %v", err)
	}
	_, err = client.Acquire(context.Background(), "minute", map[string]string{"user": "x"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("a missing descriptor key: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	addr := closedPort(t)
	t.Run("Return", func(t *testing.T) {
		_, err := connect(t, addr).Acquire(context.Background(), "minute", tenant("down"))
		if status.Code(err) != codes.Unavailable {
			t.Errorf("want codes.Unavailable, got %v", err)
		}
	})
	t.Run("Open", func(t *testing.T) {
		permit, err := connect(t, addr, sluice.OnUnavailable(sluice.Open)).Acquire(context.Background(), "minute", tenant("down"))
		if err != nil || permit.DecidedBy != sluice.DecidedByClientOpen || permit.PermitID != "" {
			t.Fatalf("want a permit granted by the client, got %+v, %v", permit, err)
		}
		if err := permit.Release(context.Background()); err != nil {
			t.Errorf("Release of a permit with nothing to give back: %v", err)
		}
	})
	t.Run("Closed", func(t *testing.T) {
		_, err := connect(t, addr, sluice.OnUnavailable(sluice.Closed)).Acquire(context.Background(), "minute", tenant("down"))
		denied := denial(t, err)
		if denied.DecidedBy != sluice.DecidedByClientClosed || denied.Reason == "" || status.Code(errors.Unwrap(err)) != codes.Unavailable {
			t.Errorf("want a denial by the client over codes.Unavailable, got %+v", denied)
		}
	})
}

func TestSilentSidecar(t *testing.T) {
	addr := silentPort(t)
	const timeout = 300 * time.Millisecond
	t.Run("Return", func(t *testing.T) {
		started := time.Now()
		_, err := connect(t, addr, sluice.Timeout(timeout)).Acquire(context.Background(), "minute", tenant("silent"), sluice.WithMaxWait(500*time.Millisecond))
		if status.Code(err) != codes.DeadlineExceeded || time.Since(started) < 800*time.Millisecond {
			t.Errorf("want codes.DeadlineExceeded after max_wait and the timeout, got %v after %v", err, time.Since(started))
		}
	})
	t.Run("Open", func(t *testing.T) {
		permit, err := connect(t, addr, sluice.Timeout(timeout), sluice.OnUnavailable(sluice.Open)).Acquire(context.Background(), "minute", tenant("silent"))
		if err != nil || permit.DecidedBy != sluice.DecidedByClientOpen {
			t.Errorf("want a permit granted by the client, got %+v, %v", permit, err)
		}
	})
	t.Run("Closed", func(t *testing.T) {
		_, err := connect(t, addr, sluice.Timeout(timeout), sluice.OnUnavailable(sluice.Closed)).Acquire(context.Background(), "minute", tenant("silent"))
		if denied := denial(t, err); denied.DecidedBy != sluice.DecidedByClientClosed {
			t.Errorf("want a denial by the client, got %+v", denied)
		}
	})
	t.Run("CallersDeadline", func(t *testing.T) {
		// The caller's own deadline is not the sidecar's failure: its error comes back.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := connect(t, addr, sluice.OnUnavailable(sluice.Open)).Acquire(ctx, "minute", tenant("silent"))
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("want codes.DeadlineExceeded, got %v", err)
		}
	})
}

func TestCancelWhileWaiting(t *testing.T) {
	client := sidecar(t)
	scope := tenant("cancel")
	held := acquire(t, client, "slot", scope)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiter := make(chan error, 1)
	go func() {
		_, err := client.Acquire(ctx, "slot", scope, sluice.WithMaxWait(30*time.Second))
		waiter <- err
	}()
	checkpoint(t, "waiting", "slot", scope) // its ticket is in the line
	cancel()
	if err := <-waiter; status.Code(err) != codes.Canceled {
		t.Fatalf("a cancelled wait: %v", err)
	}
	checkpoint(t, "gone", "slot", scope) // the line holds nothing of it

	if err := held.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
	// Granted without waiting: the freed slot was not given to the cancelled request.
	next := acquire(t, client, "slot", scope)
	if err := next.Release(context.Background()); err != nil {
		t.Errorf("Release: %v", err)
	}
}
