"""Cost and tokens of Claude Code sessions, from OpenTelemetry (see integrations/otlp)."""
