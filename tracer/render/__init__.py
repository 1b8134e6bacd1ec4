"""Renderers: separate passes over a finished trace (text, JSON, pcap) and over forks."""
