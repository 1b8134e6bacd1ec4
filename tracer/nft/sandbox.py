"""A network namespace of our own for nftables rulesets: load with ``nft -f``, list, trace.

Built on :class:`tracer.kernel.cleanup.OwnedNamespaces`, so the namespace goes away however the
process ends; nothing touches the host's netfilter."""

from __future__ import annotations

from tracer.kernel import nsexec
from tracer.kernel.cleanup import OwnedNamespaces


class NftSandbox(OwnedNamespaces):
    """One namespace; ``load`` replaces its whole ruleset with the given ``nft -f`` text."""

    name: str = ""

    def _build(self) -> None:
        self.name = self.new_namespace()

    def load(self, text: str) -> None:
        """Flush the namespace's ruleset, then load ``text`` in one transaction; raises
        :class:`tracer.kernel.nsexec.CommandFailed` with nft's first error lines."""
        nsexec.run(self.name, ["nft", "-f", "-"], input_text="flush ruleset\n" + text)

    def listing(self, *flags: str) -> str:
        return nsexec.run(self.name, ["nft", *flags, "list", "ruleset"])
