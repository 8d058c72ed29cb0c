// Package responders defines what a responder is, how responders register
// themselves at build time, how a Kinesis record becomes a Command, and how a
// Command reaches the one enabled responder that serves its schema.
//
// A responder package registers a Module in init():
//
//	func init() {
//		responders.Register(responders.Module{
//			Name:          "slack",
//			ConfigSchemas: []schemas.Key{...},
//			Commands:      []schemas.Key{...},
//			New:           newSlack,
//		})
//	}
//
// and a binary links it in with a blank import, as database/sql drivers are.
// The package responders/all imports every built-in responder; a custom
// binary is a main package that imports responders/all (or a subset) plus its
// own responder packages.
//
// The call order for one configured responder is: Module.New (decode and
// validate the config; no network, no goroutines), then any number of
// concurrent Respond calls, then Close if the responder implements io.Closer.
// Respond returns nil when the command is done, or an error classified by
// Classify: Permanent (never retried), Retryable (retried after a delay), or
// anything else, which is treated as retryable because losing a command is
// worse than retrying it.
//
// Module.New refuses a parameter with a *ParamError naming it, so that
// `sauna validate` and the reload log report it at its path like any other
// config problem:
//
//	if err := checkURL(p.WebhookURL); err != nil {
//		return nil, &responders.ParamError{Param: "webhookUrl", Err: err}
//	}
//	// x.json: data.parameters.webhookUrl: must be an http(s) URL
//
// or responders.ParamErrorf("timeoutMillis", "must be 1 to %d", max). Its
// message never quotes a secret value. Any other error from New is reported
// at the config's "data".
//
// A Dispatcher routes commands: Resolve finds a command's responder once
// (or rejects the command: expired, no responder), and Send makes each
// attempt of the resolved Route, checking the TTL just before the call and
// following a reload that replaced the responders meanwhile. The caller
// owns waiting and retrying between attempts.
package responders
