#!/bin/bash
# sudo on a lab host (written by tasks/lab/hosts/shims.ts): runs the rest as root, no server needed.
# Ubuntu's sudoers (env_reset, HOME set to the target's) gives root HOME=/root; PATH and LAB_* stay,
# as secure_path would keep the lab's commands. The login user has NOPASSWD sudo (cloud-init's default).
while [ $# -gt 0 ]; do
  case $1 in
    -n|-E|-H) shift ;;
    -u) [ "$2" = root ] || { printf 'sudo: the lab runs commands as root only (-u %s)\n' "$2" >&2; exit 1; }; shift 2 ;;
    -uroot) shift ;;
    --) shift; break ;;
    -*) printf "sudo: invalid option -- '%s'\nusage: sudo [-EHn] [-u user] command [arg ...]\n" "${1#-}" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ $# -eq 0 ]; then printf 'usage: sudo [-EHn] [-u user] command [arg ...]\n' >&2; exit 1; fi
if [ "${1#*/}" = "$1" ] && ! type -P -- "$1" >/dev/null; then printf 'sudo: %s: command not found\n' "$1" >&2; exit 1; fi
export SUDO_USER=$LAB_LOGIN_USER LAB_USER=root HOME=/root USER=root LOGNAME=root
exec "$@"
