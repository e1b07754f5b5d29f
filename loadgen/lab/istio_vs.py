"""A ``VirtualService`` read as Istio reads it: ``hosts``, ``gateways`` and its ``http`` routes, with
their matches (``uri``, headers, ``withoutHeaders``, query parameters, method, authority, scheme),
weighted destinations, ``fault``, ``mirror``/``mirrors``, ``timeout`` and ``retries``; the
request-shaping parts (``headers``, ``rewrite``, ``redirect``, ``directResponse``) are read by
:mod:`loadgen.lab.istio_http`. Every destination is noted as a :class:`Ref` for
:mod:`loadgen.lab.istio` to check once every document is read (its subset exists, its port agrees)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from loadgen.lab import istio_fields as fr
from loadgen.lab import istio_http as ih
from loadgen.lab.istio_fields import MAX_U32, Ctx, join, resolve_host
from loadgen.lab.model import (
    Destination,
    Fault,
    FaultAbort,
    FaultDelay,
    Fraction,
    HeaderMatch,
    HttpRoute,
    Mirror,
    Retries,
    RouteMatch,
    StringMatch,
    VirtualService,
)


@dataclass
class Ref:
    """A destination to check once every document is read: its subset must exist, its port agree."""

    ctx: Ctx
    path: str
    host: str
    subset: str
    port: int  # 0 = not given


def _string_match(ctx: Ctx, v: object, path: str, *, allow_present: bool) -> StringMatch:
    m = fr.read_mapping(ctx, v if v is not None else {}, path)
    fr.check_fields(ctx, m, path, {"exact", "prefix", "regex"})
    if len(m) > 1:
        raise ctx.error(path, f"give one of exact, prefix or regex, not {' and '.join(m)}")
    if not m:
        if allow_present:
            return StringMatch("present")
        raise ctx.error(path, "give one of exact, prefix or regex")
    kind, value = next(iter(m.items()))
    value = fr.read_str(ctx, value, join(path, kind), required=False)
    if kind == "regex":
        if allow_present and value in ("*", ""):
            return StringMatch("present")  # Istio: regex "*" → present_match
        try:
            re.compile(value)
        except re.error as exc:
            raise ctx.error(join(path, kind), f"invalid regex {value!r}: {exc}") from None
    return StringMatch(kind, value)


def _match(ctx: Ctx, v: object, path: str) -> RouteMatch:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(
        ctx,
        m,
        path,
        {
            "name",
            "uri",
            "scheme",
            "method",
            "authority",
            "headers",
            "withoutHeaders",
            "queryParams",
            "ignoreUriCase",
            "statPrefix",
        },
        {
            "port": "the lab has one listener per service",
            "sourceLabels": "the lab's client has no labels; the condition is treated as matching",
            "sourceNamespace": "the lab's client has no namespace; the condition is treated as matching",
            "gateways": "the lab has no gateways; the condition is treated as matching",
        },
    )
    uri = (
        _string_match(ctx, m["uri"], join(path, "uri"), allow_present=False)
        if m.get("uri") is not None
        else None
    )
    headers: list[HeaderMatch] = []
    for key, hname in (("method", ":method"), ("authority", ":authority"), ("scheme", ":scheme")):
        if m.get(key) is not None:
            headers.append(
                HeaderMatch(hname, _string_match(ctx, m[key], join(path, key), allow_present=True))
            )
    for key, invert in (("headers", False), ("withoutHeaders", True)):
        if m.get(key) is not None:
            hp = join(path, key)
            for name, sm in fr.read_mapping(ctx, m[key], hp).items():
                headers.append(
                    HeaderMatch(
                        name.lower(), _string_match(ctx, sm, join(hp, name), allow_present=True), invert
                    )
                )
    params: list[tuple[str, StringMatch]] = []
    if m.get("queryParams") is not None:
        qp = join(path, "queryParams")
        for name, sm in sorted(fr.read_mapping(ctx, m["queryParams"], qp).items()):
            params.append((name, _string_match(ctx, sm, join(qp, name), allow_present=True)))
    ignore_case = (
        fr.read_bool(ctx, m["ignoreUriCase"], join(path, "ignoreUriCase")) if "ignoreUriCase" in m else False
    )
    stat_prefix = fr.read_str(ctx, m["statPrefix"], join(path, "statPrefix")) if m.get("statPrefix") else ""
    return RouteMatch(uri, tuple(headers), tuple(params), ignore_case, stat_prefix)


def _destination(ctx: Ctx, v: object, path: str, refs: list[Ref]) -> Destination:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"host", "subset", "port"})
    host = resolve_host(ctx, m.get("host"), join(path, "host"))
    subset = fr.read_str(ctx, m.get("subset"), join(path, "subset"), required=False)
    port = 0
    if m.get("port") is not None:
        pp = join(path, "port")
        pm = fr.read_mapping(ctx, m["port"], pp)
        fr.check_fields(ctx, pm, pp, {"number"})
        port = fr.read_int(ctx, pm.get("number"), join(pp, "number"), 1, 65535)
    refs.append(Ref(ctx, join(path, "subset") if subset else path, host, subset, port))
    return Destination(host, subset, port, port_given=port != 0)


def _fault(ctx: Ctx, v: object, path: str) -> Fault:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"delay", "abort"})
    delay = abort = None
    if m.get("delay") is not None:
        dp = join(path, "delay")
        d = fr.read_mapping(ctx, m["delay"], dp)
        fr.check_fields(ctx, d, dp, {"fixedDelay", "percentage", "percent", "exponentialDelay"})
        if "exponentialDelay" in d:
            raise ctx.error(join(dp, "exponentialDelay"), "not supported (Istio does not support it either)")
        if "fixedDelay" not in d:
            raise ctx.error(join(dp, "fixedDelay"), "required")
        fixed = fr.read_duration(ctx, d["fixedDelay"], join(dp, "fixedDelay"), fr.MS)
        if d.get("percentage") is not None:
            pct = fr.read_percent(ctx, d["percentage"], join(dp, "percentage"))
        elif "percent" in d:  # deprecated integer percent → {n, HUNDRED}, as Istio renders it
            pct = Fraction(fr.read_int(ctx, d["percent"], join(dp, "percent"), 0, 100), "HUNDRED")
        else:
            pct = Fraction(0, "HUNDRED")
            ctx.warn(
                dp, "no percentage: as in Istio, no request is delayed (set percentage.value: 100 for all)"
            )
        delay = FaultDelay(fixed, pct)
    if m.get("abort") is not None:
        ap = join(path, "abort")
        a = fr.read_mapping(ctx, m["abort"], ap)
        fr.check_fields(ctx, a, ap, {"httpStatus", "percentage", "percent", "grpcStatus", "http2Error"})
        for k in ("grpcStatus", "http2Error"):
            if k in a:
                raise ctx.error(join(ap, k), "not supported by the lab (use httpStatus)")
        if "httpStatus" not in a:
            raise ctx.error(join(ap, "httpStatus"), "required")
        status = fr.read_int(ctx, a["httpStatus"], join(ap, "httpStatus"), 200, 599)
        apct: Fraction | None
        if a.get("percentage") is not None:
            apct = fr.read_percent(ctx, a["percentage"], join(ap, "percentage"))
        elif "percent" in a:
            apct = Fraction(fr.read_int(ctx, a["percent"], join(ap, "percent"), 0, 100), "HUNDRED")
            ctx.warn(
                join(ap, "percent"),
                "removed from Istio's API (current Istio rejects it); read as "
                "percentage.value, as Istio 1.0-1.1 did",
            )
        else:
            apct = None
            ctx.warn(
                ap, "no percentage: as in Istio, no request is aborted (set percentage.value: 100 for all)"
            )
        abort = FaultAbort(status, apct)
    if delay is None and abort is None:
        raise ctx.error(path, "give delay or abort (or both)")
    return Fault(delay, abort)


def _retries(ctx: Ctx, v: object, path: str) -> Retries:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(
        ctx,
        m,
        path,
        {"attempts", "perTryTimeout", "retryOn", "retryIgnorePreviousHosts", "backoff"},
        {"retryRemoteLocalities": "the lab has one locality"},
    )
    attempts = fr.read_int(ctx, m.get("attempts", 0), join(path, "attempts"))
    per_try = (
        fr.read_duration(ctx, m["perTryTimeout"], join(path, "perTryTimeout"), fr.MS)
        if "perTryTimeout" in m
        else None
    )
    retry_on = None
    if m.get("retryOn"):
        retry_on = fr.read_str(ctx, m["retryOn"], join(path, "retryOn"))
    if "retryIgnorePreviousHosts" in m:
        fr.read_bool(ctx, m["retryIgnorePreviousHosts"], join(path, "retryIgnorePreviousHosts"))
    ignore_prev = m.get("retryIgnorePreviousHosts")
    backoff = fr.read_duration(ctx, m["backoff"], join(path, "backoff"), fr.MS) if "backoff" in m else None
    return Retries(attempts, per_try, retry_on, ignore_prev, backoff)


def _mirror_percent(ctx: Ctx, r: dict[str, Any], path: str) -> Fraction | None:
    """Istio's MirrorPercent: mirrorPercentage, else mirror_percent, else 100 %; explicit 0: no mirror."""
    if r.get("mirrorPercentage") is not None:
        f = fr.read_percent(ctx, r["mirrorPercentage"], join(path, "mirrorPercentage"))
        return f if f.numerator > 0 else None
    for key in ("mirror_percent", "mirrorPercent"):
        if r.get(key) is not None:
            raw = r[key]
            if isinstance(raw, dict):  # UInt32Value written as {value: n}
                raw = raw.get("value", 0)
            n = fr.read_int(ctx, raw, join(path, key), 0, 100)
            return Fraction(n, "HUNDRED") if n > 0 else None
    return Fraction(100, "HUNDRED")


def _http_route(ctx: Ctx, v: object, path: str, refs: list[Ref]) -> HttpRoute | None:
    r = fr.read_mapping(ctx, v, path)
    unsupported = {
        "corsPolicy": "not modelled by the lab",
        "delegate": "a delegate VirtualService cannot delegate again: Istio allows one level",
    }
    fr.check_fields(
        ctx,
        r,
        path,
        {
            "name",
            "match",
            "route",
            "timeout",
            "retries",
            "fault",
            "mirror",
            "mirrors",
            "mirrorPercentage",
            "mirror_percent",
            "mirrorPercent",
            "headers",
            "rewrite",
            "redirect",
            "directResponse",
        },
        unsupported,
    )
    name = fr.read_str(ctx, r.get("name"), join(path, "name"), required=False)
    matches = tuple(
        _match(ctx, item, join(join(path, "match"), i))
        for i, item in enumerate(
            fr.read_list(ctx, r["match"], join(path, "match")) if r.get("match") is not None else []
        )
    )
    fault = _fault(ctx, r["fault"], join(path, "fault")) if r.get("fault") is not None else None
    actions = [k for k in ("route", "redirect", "directResponse") if r.get(k) is not None]
    if len(actions) > 1:
        raise ctx.error(path, f"give one of route, redirect or directResponse, not {' and '.join(actions)}")
    if r.get("redirect") is not None or r.get("directResponse") is not None:
        what = "redirect" if r.get("redirect") is not None else "directResponse"
        for k in ("fault", "rewrite"):  # Istio rejects these next to a redirect or a direct response
            if r.get(k) is not None:
                raise ctx.error(join(path, k), f"an HTTP route cannot contain both {k} and {what}")
        for k in ("mirror", "mirrors", "timeout", "retries"):
            if r.get(k) is not None:
                ctx.warn(join(path, k), "ignored (the route answers by itself: no upstream request)")
        headers = (
            ih.header_ops(ctx, r["headers"], join(path, "headers")) if r.get("headers") is not None else None
        )
        redirect = ih.redirect(ctx, r["redirect"], join(path, "redirect")) if what == "redirect" else None
        direct = (
            ih.direct_response(ctx, r["directResponse"], join(path, "directResponse"))
            if what == "directResponse"
            else None
        )
        return HttpRoute(name, matches, (), None, headers=headers, redirect=redirect, direct_response=direct)
    if not r.get("route"):
        if "delegate" in r:
            ctx.warn(path, "route skipped: it has no route destinations")
            return None
        raise ctx.error(
            join(path, "route"), "required (a list of destinations, or a redirect or directResponse)"
        )
    rewrite = ih.rewrite(ctx, r["rewrite"], join(path, "rewrite")) if r.get("rewrite") is not None else None
    headers = (
        ih.header_ops(
            ctx, r["headers"], join(path, "headers"), rewrite_authority=rewrite.authority if rewrite else ""
        )
        if r.get("headers") is not None
        else None
    )
    rp = join(path, "route")
    dests: list[Destination] = []
    for i, item in enumerate(fr.read_list(ctx, r["route"], rp)):
        ip = join(rp, i)
        dm = fr.read_mapping(ctx, item, ip)
        fr.check_fields(
            ctx,
            dm,
            ip,
            {"destination", "weight", "headers"},
        )
        if dm.get("destination") is None:
            raise ctx.error(join(ip, "destination"), "required")
        d = _destination(ctx, dm["destination"], join(ip, "destination"), refs)
        weight = (
            fr.read_int(ctx, dm["weight"], join(ip, "weight"), 0, 2**31 - 1)
            if dm.get("weight") is not None
            else 0
        )
        dh = ih.header_ops(ctx, dm["headers"], join(ip, "headers")) if dm.get("headers") is not None else None
        dests.append(replace(d, weight=weight, headers=dh))
    if len(dests) > 1:
        # weights are relative (Istio >= 1.15 no longer asks for a sum of 100), but something
        # must get the traffic, and Envoy sums them in 32 bits
        total = sum(d.weight for d in dests)
        if not 0 < total <= MAX_U32:
            parts = " + ".join(str(d.weight) for d in dests)
            raise ctx.error(
                rp,
                f"weights sum to {total} ({parts}): no destination would get traffic"
                if total == 0
                else f"weights sum to {total} ({parts}), above {MAX_U32}",
            )
        if total != 100:  # accepted, as current Istio does; but often a typo, and older Istio refused it
            shares = ", ".join(f"{d.subset or d.host} {100 * d.weight / total:.1f} %" for d in dests)
            ctx.warn(
                rp,
                f"weights sum to {total}, not 100: read as relative weights, as current Istio does "
                f"({shares}); older Istio releases reject a sum other than 100",
            )
    mirrors: list[Mirror] = []
    if r.get("mirror") is not None and r.get("mirrors") is not None:
        raise ctx.error(join(path, "mirrors"), "give mirror or mirrors, not both")
    if r.get("mirror") is not None:
        dest = _destination(ctx, r["mirror"], join(path, "mirror"), refs)
        pct = _mirror_percent(ctx, r, path)
        if pct is not None:
            mirrors.append(Mirror(dest, pct))
    elif any(r.get(k) is not None for k in ("mirrorPercentage", "mirror_percent", "mirrorPercent")):
        ctx.warn(path, "mirror percentage without mirror: ignored")
    if r.get("mirrors") is not None:
        mp = join(path, "mirrors")
        for i, item in enumerate(fr.read_list(ctx, r["mirrors"], mp)):
            ip = join(mp, i)
            mm = fr.read_mapping(ctx, item, ip)
            fr.check_fields(ctx, mm, ip, {"destination", "percentage"})
            if mm.get("destination") is None:
                raise ctx.error(join(ip, "destination"), "required")
            dest = _destination(ctx, mm["destination"], join(ip, "destination"), refs)
            f = (
                fr.read_percent(ctx, mm["percentage"], join(ip, "percentage"))
                if mm.get("percentage") is not None
                else Fraction(100, "HUNDRED")
            )
            if f.numerator > 0:
                mirrors.append(Mirror(dest, f))
    timeout = (
        fr.read_duration(ctx, r["timeout"], join(path, "timeout")) if r.get("timeout") is not None else None
    )
    retries = _retries(ctx, r["retries"], join(path, "retries")) if r.get("retries") is not None else None
    return HttpRoute(
        name, matches, tuple(dests), fault, tuple(mirrors), timeout, retries, headers=headers, rewrite=rewrite
    )


def virtual_service(ctx: Ctx, spec: dict[str, Any], refs: list[Ref]) -> VirtualService:
    fr.check_fields(
        ctx,
        spec,
        "",
        {"hosts", "http", "gateways"},
        {
            "tcp": "the lab routes HTTP only",
            "tls": "the lab routes HTTP only",
            "exportTo": "the lab has one namespace view",
        },
    )
    if not spec.get("hosts"):
        raise ctx.error("hosts", "missing host (a list of service names)")
    hosts = tuple(
        dict.fromkeys(
            resolve_host(ctx, h, join("hosts", i))
            for i, h in enumerate(fr.read_list(ctx, spec["hosts"], "hosts"))
        )
    )
    if spec.get("gateways") is not None:
        gws = [
            fr.read_str(ctx, g, join("gateways", i))
            for i, g in enumerate(fr.read_list(ctx, spec["gateways"], "gateways"))
        ]
        if "mesh" not in gws:
            ctx.warn(
                "gateways",
                f"{gws} does not include 'mesh': in Istio these routes would not apply to "
                "sidecars; the lab applies them anyway",
            )
    routes: list[HttpRoute] = []
    if spec.get("http") is not None:
        for i, item in enumerate(fr.read_list(ctx, spec["http"], "http")):
            route = _http_route(ctx, item, join("http", i), refs)
            if route is not None:
                routes.append(route)
    else:
        ctx.warn("http", "no http routes: requests to these hosts get 404 (NR), as in Istio")
    return VirtualService(ctx.name, ctx.namespace, hosts, tuple(routes), ctx.source, ctx.document)
