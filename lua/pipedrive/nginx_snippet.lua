-- pipedrive.nginx_snippet: the nginx location that pipedrive.ngx's transport
-- sends API calls through (README "OpenResty"), as text, so that an installed
-- rock carries it: `pipedrive nginx-snippet > /etc/nginx/pipedrive-location.conf`,
-- or require("pipedrive.nginx_snippet").text from Lua.
-- examples/openresty/pipedrive-location.conf holds the same text (a spec keeps
-- the two byte for byte equal).
local M = {}

M.text = [==[
# The internal location the pipedrive.ngx transport sends API calls through
# (a subrequest: nginx does the I/O, the worker keeps serving). Include it in
# the server block of the site that calls Pipedrive:
#     include /path/to/pipedrive-location.conf;
# pipedrive.ngx.upstream() moves the call (URL, credentials, content type) from
# the subrequest's ngx.ctx into the variables below; nothing of the visitor's
# request (cookies, authorization) is passed on.
location /_pipedrive {
    internal;
    set $pipedrive_url "";
    set $pipedrive_authorization "";
    set $pipedrive_api_token "";
    set $pipedrive_content_type "";
    set $pipedrive_accept "";
    rewrite_by_lua_block { require("pipedrive.ngx").upstream() }

    proxy_pass $pipedrive_url;
    proxy_pass_request_headers off;
    proxy_set_header Authorization $pipedrive_authorization;
    proxy_set_header X-Api-Token $pipedrive_api_token;
    proxy_set_header Content-Type $pipedrive_content_type;
    proxy_set_header Accept $pipedrive_accept;
    proxy_set_header User-Agent "pipedrive-lua (nginx)";
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_connect_timeout 10s;
    proxy_send_timeout 30s;
    proxy_read_timeout 30s;
    proxy_buffering on;
    proxy_buffers 16 64k;
    proxy_max_temp_file_size 0;
    subrequest_output_buffer_size 8m;

    # https://yourcompany.pipedrive.com: verify the certificate and send SNI.
    # (proxy_pass with a variable resolves names at run time: `resolver` is
    # needed in the http or server block, e.g. `resolver 127.0.0.53;`.)
    proxy_ssl_server_name on;
    proxy_ssl_verify on;
    proxy_ssl_verify_depth 3;
    proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
}
]==]

local USAGE = "usage: pipedrive nginx-snippet  (prints the nginx location for OpenResty; README \"OpenResty\")"

--- `pipedrive nginx-snippet`: argv as given to the command (argv[1] is
-- "nginx-snippet"), out = { stdout = fn, stderr = fn }. Returns the exit code.
function M.command(argv, out)
  local arg2 = argv[2]
  if arg2 == "--help" or arg2 == "-h" then
    out.stdout(USAGE .. "\n")
    return 0
  elseif arg2 ~= nil then
    out.stderr("pipedrive: nginx-snippet takes no arguments\n" .. USAGE .. "\n")
    return 2
  end
  out.stdout(M.text)
  return 0
end

return M
