"""Notification templates, rendering and (later) delivery channels."""
