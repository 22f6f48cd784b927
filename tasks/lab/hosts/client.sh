# The lab host client, inlined into every simulated command by shims.ts (see the wire format
# there). `lab NAME ARGS...` sends the command to the host server and exits with its exit code.
lab() {
  local LC_ALL=C hp=${LAB_URL#http://} session=${LAB_SESSION:-ssh ${SSH_CONNECTION:-}}
  local flags= k f n line code=1 olen=0 clen=0 need= out input= has=0
  local envs=() fields=()
  hp=${hp%%/*}
  [ -t 1 ] && flags=t
  for k in @PASSED_ENV@; do [ -n "${!k+x}" ] && envs+=("$k=${!k}"); done
  while :; do
    fields=("$LAB_HOST" "$LAB_USER" "$LAB_LOGIN_USER" "$session" "$flags" "${#envs[@]}" "${envs[@]}" "$#" "$@" "$has")
    n=${#input}
    for f in "${fields[@]}"; do n=$((n + ${#f} + 1)); done
    { exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}"; } 2>/dev/null ||
      { printf 'lab: the host server at %s does not answer (is the lab running?)\n' "$LAB_URL" >&2; exit 255; }
    printf 'POST /exec HTTP/1.0\r\nContent-Length: %d\r\n\r\n' "$n" >&3
    printf '%s\0' "${fields[@]}" >&3
    printf '%s' "$input" >&3
    IFS= read -r line <&3 || { printf 'lab: the host server closed the connection\n' >&2; exit 255; }
    while IFS= read -r line <&3; do
      line=${line%$'\r'}
      [ -z "$line" ] && break
      case $line in
        X-Exit-Code:*) code=${line#*: } ;;
        X-Stdout-Length:*) olen=${line#*: } ;;
        Content-Length:*) clen=${line#*: } ;;
        X-Need-Stdin:*) need=1 ;;
      esac
    done
    if [ -z "$need" ] || [ "$has" = 1 ]; then break; fi
    # The command reads stdin: send it again with stdin (a command that does not never takes it),
    # as base64: a variable cannot hold the NUL bytes of a binary upload.
    exec 3<&-
    input=$(@BASE64@ -w0)
    has=1
  done
  if [ "$olen" -gt 0 ]; then IFS= read -r -d '' -N "$olen" out <&3; printf '%s' "$out"; fi
  if [ $((clen - olen)) -gt 0 ]; then IFS= read -r -d '' -N $((clen - olen)) out <&3; printf '%s' "$out" >&2; fi
  exit "$code"
}
