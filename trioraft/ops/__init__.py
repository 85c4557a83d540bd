"""What an operator meets: the config file, the command line, the daemon, `status`,
systemd notification, TLS contexts from their files, the metrics and health endpoint,
backup and restore, and the local quickstart cluster."""
