"""The scaled deployment: systemd units, nginx site, compose file, and the smoke test (``python -m deploy.smoke``)."""
