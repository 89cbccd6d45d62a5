
// TestNetworkPhase measures the network phase of bridged creates from the
// daemon's per-phase log (it is reported, not asserted, beyond a sanity
// bound).
func TestNetworkPhase(t *testing.T) {
	setup(t)
	for range 10 {
		sb, err := admin.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{Image: testImage, Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge}})
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.DeleteSandbox(t.Context(), sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	var phases []time.Duration
	for _, line := range strings.Split(daemon.Log(), "\n") {
		if !strings.Contains(line, "sandbox created") || !strings.Contains(line, "network=bridge") {
			continue
		}
		_, v, ok := strings.Cut(line, "phases.network=")
		if !ok {
			t.Fatalf("a bridged create without a network phase: %s", line)
		}
		d, err := time.ParseDuration(strings.Fields(v)[0])
		if err != nil {
			t.Fatal(err)
		}
		phases = append(phases, d)
	}
	if len(phases) < 10 {
		t.Fatalf("found %d network phases in the log", len(phases))
	}
	slices.Sort(phases)
	t.Logf("network phase over %d bridged creates: min %v, p50 %v, max %v", len(phases), phases[0], phases[len(phases)/2], phases[len(phases)-1])
	if phases[len(phases)/2] > 200*time.Millisecond {
		t.Errorf("network phase p50 %v", phases[len(phases)/2])
	}
	leakCheck(t)
}
