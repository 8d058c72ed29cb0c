package cli

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/sauna-io/sauna/observer"
	"github.com/sauna-io/sauna/observer/admin"
	"github.com/sauna-io/sauna/observer/metrics"
)

// daemonStatus assembles /status and /readyz from the supervisor (what is
// configured, reloads) and the metrics (what each observer's worker does).
type daemonStatus struct {
	sup *observer.Supervisor
	met *metrics.Metrics
}

func (d daemonStatus) Status() admin.Status {
	running := d.sup.Running()
	states := map[string]metrics.ObserverState{}
	for _, st := range d.met.Observers() {
		states[st.ID] = st
	}
	var st admin.Status
	for _, e := range running {
		switch e.Kind {
		case observer.KindObserver:
			// An observer whose first run has not begun yet has no state:
			// it shows as not running.
			o := admin.ObserverStatus{ID: e.ID, Stream: e.Observer.StreamName}
			if s, ok := states[e.ID]; ok && s.Stream == e.Observer.StreamName {
				o.Running, o.WorkerID, o.StartedAt = s.Running, s.WorkerID, s.StartedAt
				o.MillisBehindLatest, o.InFlight = s.MillisBehindLatest, s.InFlight
				o.LastError, o.LastErrorAt = s.LastError, s.LastErrorAt
				lag := map[string]int64{}
				for _, sh := range s.Shards {
					o.Shards = append(o.Shards, admin.ShardStatus{ID: sh.ID, LeaseGainedAt: sh.LeaseGainedAt,
						LastPollAt: sh.LastPollAt, MillisBehindLatest: sh.MillisBehindLatest})
					lag[sh.ID] = sh.MillisBehindLatest
				}
				o.Workers = s.Workers
				for _, l := range s.Leases {
					ls := admin.LeaseStatus{Shard: l.Shard, Owner: l.Owner, Checkpoint: l.Checkpoint, HandoffTo: l.HandoffTo}
					if ms, ok := lag[l.Shard]; ok && l.Owner == s.WorkerID {
						ls.MillisBehindLatest = &ms
					}
					o.Leases = append(o.Leases, ls)
				}
			}
			st.Observers = append(st.Observers, o)
		case observer.KindResponder:
			state := "enabled"
			if e.Responder == nil {
				state = "disabled"
			}
			st.Responders = append(st.Responders, admin.ResponderStatus{ID: e.ID, Module: e.Module, State: state})
		case observer.KindIngest:
			st.Ingest = append(st.Ingest, admin.IngestStatus{ID: e.ID, Listen: e.Ingest.Listen, Stream: e.Ingest.StreamName})
		}
	}
	slices.SortFunc(st.Observers, func(a, b admin.ObserverStatus) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(st.Responders, func(a, b admin.ResponderStatus) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(st.Ingest, func(a, b admin.IngestStatus) int { return cmp.Compare(a.ID, b.ID) })
	r := d.sup.ReloadStatus()
	st.Reload = admin.ReloadStatus{
		LastRescan: r.LastRescan, LastSuccess: r.LastSuccess,
		Rescans: r.Rescans, Applied: r.Applied, Refused: r.Refused,
		Refusing: r.Refusing, LastError: r.LastError,
	}
	return st
}

// secrets lists the credentials of the running observer configs, which the
// admin endpoints redact should an error text ever quote one.
func (d daemonStatus) secrets() []string {
	var s []string
	for _, e := range d.sup.Running() {
		switch e.Kind {
		case observer.KindObserver:
			s = append(s, e.Observer.AccessKeyID, e.Observer.SecretAccessKey)
		case observer.KindIngest:
			s = append(s, e.Ingest.AccessKeyID, e.Ingest.SecretAccessKey)
		}
	}
	return s
}

// reloadStats feeds sauna_config_* from the supervisor at each scrape.
func (d daemonStatus) reloadStats() metrics.ReloadStats {
	r := d.sup.ReloadStatus()
	return metrics.ReloadStats{Rescans: r.Rescans, Applied: r.Applied, Refused: r.Refused,
		Refusing: len(r.Refusing), LastSuccess: r.LastSuccess}
}

// adminTokenOf reads the admin token, if a file is given, and refuses an
// address beyond loopback without one.
func adminTokenOf(addr, file string) (string, error) {
	if addr == "" {
		if file != "" {
			return "", fmt.Errorf("--admin-token-file needs the admin endpoints (--admin-addr is empty)")
		}
		return "", nil
	}
	var tok string
	if file != "" {
		var err error
		if tok, err = admin.ReadTokenFile(file); err != nil {
			return "", err
		}
	}
	return tok, admin.CheckListen(addr, tok)
}
