// Package hipchat registers HipChat as retired. HipChat Cloud was shut down
// on 2019-02-15, so there is nothing to call: an enabled HipchatConfig is
// refused with that explanation, and send_room_notification commands are
// rejected (reason "retired") instead of being reported as unknown. See
// README.md.
package hipchat

import (
	_ "embed"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// Config and command schemas that name the retired service.
var (
	ConfigV100           = schemas.Key{Vendor: "com.snowplowanalytics.sauna.responders", Name: "HipchatConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
	SendRoomNotification = schemas.Key{Vendor: "com.hipchat.sauna.commands", Name: "send_room_notification", Format: "jsonschema", Model: 1, Revision: 0, Addition: 0}
)

// Retired is why HipChat configs are refused and its commands rejected.
const Retired = "HipChat Cloud was shut down in February 2019 (2019-02-15)"

//go:embed example-config.json
var exampleConfig string

func init() {
	responders.Register(responders.Module{
		Name:          "hipchat",
		Summary:       "HipChat (retired: the service was shut down on 2019-02-15)",
		ConfigSchemas: []schemas.Key{ConfigV100},
		Commands:      []schemas.Key{SendRoomNotification},
		Retired:       Retired,
	})
}
