"""Before a restored node signs anything: ask its linked partners what they
hold of its log (:func:`credfed.backup.check_partners`), or take back from
them what they hold beyond it (:func:`credfed.recover.recover_log`), over
the same links, with the same mutual TLS, that replication uses."""

from __future__ import annotations

from credfed import backup
from credfed import logging as clog
from credfed.federation.descriptor import all_keys, decode_descriptor
from credfed.federation.replica import LogSource
from credfed.node import Node
from credfed.recover import Recovered, recover_log, refuse_if_serving
from credfed.rpc.peerlink import GrpcPeerLink, partner_links

log = clog.get("credfed.restore")


async def check_restored(node: Node, *, allow_unverified: bool = False) -> None:
    """If ``node`` was restored from a backup and not checked yet, compare
    its log with every linked partner's copy; PreconditionError (nothing
    signed, marker kept) if serving could fork the log, else clear the marker."""
    if backup.restore_pending(node.config.data_dir) is None:
        return
    config = node.config
    links: dict[str, GrpcPeerLink] = {}
    try:
        links = partner_links(config, node.peers)
        sources: dict[str, LogSource] = dict(links)
        views = await backup.check_partners(
            config.country,
            node.store,
            all_keys(decode_descriptor(node.descriptor.payload)),
            sources,
            allow_unverified=allow_unverified,
        )
    finally:
        for peer_link in links.values():
            await peer_link.close()
    size = await node.store.log_size()
    for view in views:
        log.info(
            "restore.partner_checked",
            partner=view.partner,
            partner_size=view.size,
            local_size=size,
            problem=view.problem,
        )
    backup.clear_restore_marker(config.data_dir)
    log.info("restore.verified", log_size=size, partners=len(views))


async def recover(node: Node) -> tuple[Recovered, bool]:
    """Roll ``node``'s own log forward from its linked partners' copies.
    Returns what was done and whether the restore marker is still there: it
    is cleared only when every linked partner answered, so that none can
    hold more than the log now has (else ``credfed serve`` asks again)."""
    config = node.config
    refuse_if_serving(config.data_dir, node.now())
    links: dict[str, GrpcPeerLink] = {}
    try:
        links = partner_links(config, node.peers)
        sources: dict[str, LogSource] = dict(links)
        done = await recover_log(
            config.country,
            node.store,
            all_keys(decode_descriptor(node.descriptor.payload)),
            sources,
        )
    finally:
        for peer_link in links.values():
            await peer_link.close()
    for view in done.views:
        log.info(
            "recover.partner_asked",
            partner=view.partner,
            partner_size=view.size,
            problem=view.problem,
        )
    log.info(
        "recover.done",
        partner=done.partner,
        size_before=done.size_before,
        size_after=done.size_after,
        lost=len(done.lost),
    )
    if not done.unchecked and backup.restore_pending(config.data_dir) is not None:
        backup.clear_restore_marker(config.data_dir)
    return done, backup.restore_pending(config.data_dir) is not None
