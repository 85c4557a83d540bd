"""What an operator meets: the config file, the command line, the daemon, `status`,
systemd notification, TLS contexts, logging and the local quickstart cluster."""
