package main

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	kclcfg "github.com/vmware/vmware-go-kcl-v2/clientlibrary/config"
)

func TestKCLConfigChangesOnlyWhatItIsTold(t *testing.T) {
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")
	def := kclConfig(kclOpts{app: "a", stream: "s", id: "w"}, creds)
	if def.ShardSyncIntervalMillis != kclcfg.DefaultShardSyncIntervalMillis || def.EnableLeaseStealing {
		t.Errorf("no options: shard sync %d ms, stealing %v; want the library's %d ms and off",
			def.ShardSyncIntervalMillis, def.EnableLeaseStealing, kclcfg.DefaultShardSyncIntervalMillis)
	}
	tuned := kclConfig(kclOpts{app: "a", stream: "s", id: "w", steal: true, shardSync: 2 * time.Second}, creds)
	if tuned.ShardSyncIntervalMillis != 2000 || !tuned.EnableLeaseStealing {
		t.Errorf("-steal -shard-sync 2s: shard sync %d ms, stealing %v; want 2000 ms and on",
			tuned.ShardSyncIntervalMillis, tuned.EnableLeaseStealing)
	}
	// Everything else stays at the library's defaults.
	for name, got := range map[string][2]int{
		"FailoverTimeMillis":          {tuned.FailoverTimeMillis, kclcfg.DefaultFailoverTimeMillis},
		"LeaseRefreshWaitTime":        {tuned.LeaseRefreshWaitTime, kclcfg.DefaultLeaseRefreshWaitTime},
		"LeaseStealingIntervalMillis": {tuned.LeaseStealingIntervalMillis, kclcfg.DefaultLeaseStealingIntervalMillis},
		"IdleTimeBetweenReadsMillis":  {tuned.IdleTimeBetweenReadsInMillis, kclcfg.DefaultIdleTimeBetweenReadsMillis},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %d, want the default %d", name, got[0], got[1])
		}
	}
}
