package kinesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	kcllog "github.com/vmware/vmware-go-kcl-v2/logger"

	"github.com/sauna-io/sauna/observer/kinesis/leases"
)

// kclLogger adapts the KCL's logger interface to slog. Fatalf must not end
// the process: one observer's trouble is not a reason to stop the others, so
// it reports the failure to the observer, which restarts its worker, and ends
// only the calling goroutine.
type kclLogger struct {
	log   *slog.Logger
	fatal func(error)
}

var _ kcllog.Logger = (*kclLogger)(nil)

func (l *kclLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, args...), "source", "kcl")
}

func (l *kclLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l *kclLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l *kclLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l *kclLogger) Errorf(format string, args ...any) { l.logf(errorfLevel(args), format, args...) }

// errorfLevel is the level of a KCL error line. The KCL's polling consumer
// logs every refused lease renewal as an error before it stops the shard's
// consumer, but a refusal is the lease table working as designed: the
// shard finished (its children go on), or another worker holds the lease
// now. A renewal of a lease that had already ended (lost, handed over or
// released for the shard to be read again, each logged as it happened) is
// the consumer's way of ending. Only other errors stay errors.
func errorfLevel(args []any) slog.Level {
	for _, a := range args {
		err, ok := a.(error)
		if !ok {
			continue
		}
		if errors.Is(err, leases.ErrLeaseLost) && strings.Contains(err.Error(), leases.RenewalAfterEndText) {
			return slog.LevelDebug
		}
		var refused *leases.NotAcquiredError
		if errors.As(err, &refused) {
			if refused.Finished {
				return slog.LevelDebug
			}
			return slog.LevelWarn
		}
	}
	return slog.LevelError
}

// refusedLeaseLevel is errorfLevel for a line the KCL logged through logrus
// (the polling consumer's lease renewal does): only its text is left of the
// error, so the refusal is recognised by the text NotAcquiredError always has.
func refusedLeaseLevel(msg string) slog.Level {
	switch {
	case strings.Contains(msg, leases.RenewalAfterEndText):
		return slog.LevelDebug
	case !strings.Contains(msg, leases.NotAcquiredText):
		return slog.LevelError
	case strings.Contains(msg, leases.ShardFinishedText):
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

func (l *kclLogger) Fatalf(format string, args ...any) {
	err := fmt.Errorf("kcl: "+format, args...)
	l.log.Error(err.Error(), "source", "kcl")
	if l.fatal != nil {
		l.fatal(err)
	}
	runtime.Goexit()
}

func (l *kclLogger) Panicf(format string, args ...any) {
	l.Fatalf(format, args...)
}

func (l *kclLogger) WithFields(fields kcllog.Fields) kcllog.Logger {
	attrs := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		attrs = append(attrs, k, v)
	}
	return &kclLogger{log: l.log.With(attrs...), fatal: l.fatal}
}

// The KCL writes some lines (lease renewal, among others) through the
// global logrus logger, shared by every observer of the process. Those lines
// name the worker in their text, so the hook finds the observer whose worker
// it is and logs with that observer's attributes; other lines go to the
// process logger.
var (
	routeLogrusOnce sync.Once
	logrusMu        sync.RWMutex
	logrusBase      *slog.Logger
	logrusWorkers   = map[string]*slog.Logger{}
)

// routeLogrus sends the global logrus output to slog; base logs lines that
// name no registered worker.
func routeLogrus(base *slog.Logger) {
	routeLogrusOnce.Do(func() {
		logrusMu.Lock()
		logrusBase = base
		logrusMu.Unlock()
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.DebugLevel)
		logrus.AddHook(logrusHook{})
	})
}

// registerWorker attributes logrus lines naming workerID to log until the
// returned function is called.
func registerWorker(workerID string, log *slog.Logger) (unregister func()) {
	logrusMu.Lock()
	logrusWorkers[workerID] = log
	logrusMu.Unlock()
	return func() {
		logrusMu.Lock()
		delete(logrusWorkers, workerID)
		logrusMu.Unlock()
	}
}

func loggerFor(msg string) *slog.Logger {
	logrusMu.RLock()
	defer logrusMu.RUnlock()
	for id, l := range logrusWorkers {
		if strings.Contains(msg, id) {
			return l
		}
	}
	return logrusBase
}

type logrusHook struct{}

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (logrusHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = refusedLeaseLevel(e.Message)
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	}
	log := loggerFor(e.Message)
	if log == nil || !log.Enabled(context.Background(), level) {
		return nil
	}
	attrs := make([]any, 0, 2+2*len(e.Data))
	attrs = append(attrs, "source", "kcl")
	for k, v := range e.Data {
		attrs = append(attrs, k, v)
	}
	log.Log(context.Background(), level, e.Message, attrs...)
	return nil
}
