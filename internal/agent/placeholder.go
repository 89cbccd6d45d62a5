package agent

// Process is a running exec. PLACEHOLDER: the agent implementation replaces
// this file.
type Process struct{}
