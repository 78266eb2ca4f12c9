# Sourced by scripts/bench-gateway.sh and scripts/count-gateway-work.sh.
# gateway_nginx_conf DIR UPSTREAM_PORT LISTEN_PORT WORKERS: print an nginx
# configuration doing the gateway's job, its files under DIR.
#
# The upstream id is $proxy_protocol_addr (nginx cannot turn hex into
# decimal without a scripting module); proxy_set_header replaces any header
# of that name the client sent. Keep-alive both sides, no request cap per
# connection, no access log (the gateway keeps no log either).
gateway_nginx_conf() {
  local dir=$1 up=$2 listen=$3 workers=$4
  mkdir -p "$dir/tmp"
  cat <<CONF
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/tmp;
  proxy_temp_path $dir/tmp;
  keepalive_requests 100000000;
  upstream echo {
    server 127.0.0.1:$up;
    keepalive 128;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$listen proxy_protocol;
    location / {
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Onion-CircuitID \$proxy_protocol_addr;
    }
  }
}
CONF
}
