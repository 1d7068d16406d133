# Varnish 7 (Debian bookworm: varnish 7.1) in front of iiifsrv — an HTTP cache of tiles,
# info.json, manifests and viewer assets, shared by every replica behind it.
#
#   varnishd -F -f /etc/varnish/iiifsrv.vcl -a :6081 -s malloc,1g
#
# iiifsrv says what may be shared: images and info.json carry Cache-Control (setting
# cache_control), a strong ETag and Last-Modified; errors carry no-store; anything answered to
# credentials (Authorization, the iiifsrv_session cookie) is private. This file keeps to that:
# it never stores errors, private/no-store responses or responses setting a cookie, and never
# answers a credentialed request from the cache. Point the backend at HAProxy (several
# replicas, config/haproxy.cfg) or at one iiifsrv.
vcl 4.1;

backend iiifsrv {
    .host = "127.0.0.1";
    .port = "8080";
    .connect_timeout = 2s;
    .first_byte_timeout = 60s;   # a large uncached render
    .between_bytes_timeout = 10s;
    .probe = {
        .url = "/health";        # 503 while every replica drains or none can read images
        .interval = 2s;
        .timeout = 1s;
        .window = 3;
        .threshold = 2;
    }
}

sub vcl_recv {
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);           # writes, CORS preflights: straight through
    }
    # Never cached: liveness, metrics, the viewer sign-in.
    if (req.url ~ "^/(health|metrics|session)(\?|/|$)") {
        return (pass);
    }
    # A request with credentials may get a user-specific answer: never from the cache.
    if (req.http.Authorization || req.http.Cookie ~ "(^|;\s*)iiifsrv_session=") {
        return (pass);
    }
    # Other cookies (analytics, …) change nothing iiifsrv answers: drop them so the
    # response can be shared.
    unset req.http.Cookie;
    return (hash);
}

sub vcl_backend_response {
    # Errors are never stored (iiifsrv sends no-store; this holds whatever the backend says).
    if (beresp.status >= 400) {
        set beresp.ttl = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    # Anything private, no-store, no-cache, or setting a cookie: not stored either.
    if (beresp.http.Set-Cookie
        || beresp.http.Cache-Control ~ "(?i)(private|no-store|no-cache)"
        || beresp.http.Vary == "*") {
        set beresp.ttl = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    # Serve a stale tile for a while if every replica is down or slow (the ETag is strong
    # and the URL names the rendering, so a stale tile is still the right picture).
    set beresp.grace = 6h;
}

sub vcl_deliver {
    # X-Cache for dashboards and tests; X-Varnish carries two ids on a hit.
    if (obj.uncacheable) {
        set resp.http.X-Cache = "PASS";
    } elsif (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
