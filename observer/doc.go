// Package observer turns a config directory into running observers and
// responders: it reads and validates each config file (Sauna's
// self-describing Avro-JSON, or plain JSON), builds the enabled responders
// into a dispatcher, runs one Kinesis observer per enabled observer config
// and one HTTP ingest endpoint (observer/ingest) per enabled
// HttpIngestConfig, keeping each file's entity independent of the others.
// Which files are configs, and how they are read, is decided by
// IsConfigFile and ReadConfigFile, for `sauna run` and `sauna validate`
// alike.
//
// Reload follows the config directory in this order. Supervisor.Run checks
// that the directory can be read, puts a watch on it (dirWatch), runs a
// first rescan, and then turns every trigger (a file event, lost events,
// a value on Options.Reload, the periodic rescan) into one rescan once the
// directory has been quiet (quietLoop). A rescan (reloader.rescan) scans:
// it lists the config files and reads each with ReadConfigFile, and stops
// there when no file's bytes or read error changed since the last one. It
// parses only what is new: a file whose bytes are those of its running
// entry is not parsed again, nor is an unusable version already parsed.
// plan, a pure function of what runs and what the scan found, then decides
// what starts, stops, is replaced or keeps running, and which versions are
// refused and why: an unreadable (missing permission, not a regular file,
// larger than MaxConfigSize) or invalid version is refused and the last
// good one runs on; an id or responder module that a running config holds
// stays with it, and between new files the first by name wins. The
// reloader reports the plan (each refusal and warning logged once per
// version, ReloadStatus updated), closes the parsed entries nothing will
// run, and Supervisor.apply carries out the changes: responders are
// swapped in the dispatcher, every observer that goes or changes stops
// before any starts, and ingest endpoints stop, update in place or start.
package observer
