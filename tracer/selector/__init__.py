"""Calico's label selector language: lexer, parser, canonical text, ipset IDs, fast matchers."""
