package kinesis

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/kinesis/leases"
	"github.com/sauna-io/sauna/observer/metrics"
	"github.com/sauna-io/sauna/responders"
)

// finalFlushTimeout bounds the CloudWatch flush after the worker stopped; it
// fits in the process's 20 s exit deadline after the 15 s shutdown timeout.
const finalFlushTimeout = 2 * time.Second

// openMetrics gives this run its metrics handle and, when the config asks
// for it and the AWS config loaded, its CloudWatch sink. Without
// Options.Metrics there is neither.
func (o *Observer) openMetrics(ctx context.Context, awsCfg *aws.Config) {
	m := o.opts.Metrics
	if m == nil {
		return
	}
	var sink *metrics.CloudWatch
	if c := o.cfg.CloudWatch; c.Enabled && awsCfg != nil {
		var err error
		sink, err = metrics.NewCloudWatch(metrics.CloudWatchOptions{
			Client:            metrics.NewCloudWatchClient(*awsCfg),
			Namespace:         c.Namespace,
			FlushInterval:     c.FlushInterval,
			FinalFlushTimeout: finalFlushTimeout,
			Logger:            o.log,
			Metrics:           m,
			Observer:          o.cfg.ID,
		})
		if err != nil {
			o.log.Error("CloudWatch metrics are off for this run", "err", err)
			sink = nil
		}
	}
	o.met = m.Observer(o.cfg.ID, o.cfg.StreamName, metrics.ObserverOptions{CloudWatch: sink})
	if sink != nil {
		// The sink outlives the run's context so that its last flush, after
		// the worker stopped, still has something to send with.
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = sink.Run(sctx)
		}()
		o.stopSink = func() {
			cancel()
			<-done
		}
		o.log.Info("publishing metrics to CloudWatch", "namespace", sink.Namespace(), "flush_interval", o.cfg.CloudWatch.FlushInterval)
	}
}

// closeMetrics records how the run ended and flushes CloudWatch. A run
// that ended because ctx did (a stop, a removed or changed config) also
// leaves the status; a failed one stays there, not running, with its error,
// until the next run replaces it.
func (o *Observer) closeMetrics(ctx context.Context, err error) {
	if o.met == nil {
		return
	}
	o.met.WorkerStopped(err)
	if o.stopSink != nil {
		o.stopSink()
	}
	if ctx.Err() != nil {
		o.met.Close()
	}
}

// showLeases publishes a lease table scan on /status and as the worker count.
func (o *Observer) showLeases(v leases.View) {
	if o.met == nil {
		return
	}
	out := make([]metrics.LeaseState, 0, len(v.Leases))
	for _, l := range v.Leases {
		owner := l.Owner
		if !l.Live {
			owner = ""
		}
		out = append(out, metrics.LeaseState{Shard: l.Shard, Owner: owner, Checkpoint: l.Checkpoint, HandoffTo: l.HandoffTo})
	}
	o.met.SetLeases(out, len(v.Workers))
}

func (o *Observer) countHandoff(kind string) {
	if o.met != nil {
		o.met.CountHandoff(kind)
	}
}

func (o *Observer) addInFlight(n int) {
	o.inFlight.Add(int64(n))
	if o.met != nil {
		o.met.AddInFlight(n)
	}
}

func (o *Observer) countOutcome(out command.Outcome) {
	if o.met != nil {
		o.met.Responder(out.Responder).Count(out.Verdict, string(out.Reason))
	}
}

func (o *Observer) countAttempt(module string, v responders.Verdict, took time.Duration) {
	if o.met != nil {
		o.met.Responder(module).Attempt(v, took)
	}
}
