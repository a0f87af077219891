# Source me: activates the StarPose venv and the colcon install (starpose_msgs, starpose_ros).
# shellcheck shell=bash
# colcon's setup scripts read unset variables: relax `set -u` while sourcing them.
case $- in *u*) _STARPOSE_NOUNSET=1; set +u ;; *) _STARPOSE_NOUNSET= ;; esac
_STARPOSE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "${STARPOSE_VENV:-$_STARPOSE_ROOT/.venv}/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# shellcheck disable=SC1091
. "$_STARPOSE_ROOT/install/setup.bash"
# Camera-size best-effort images need a larger Fast DDS shared-memory segment (docs/dds.md).
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_STARPOSE_ROOT/config/fastdds_profile.xml}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Keep discovery on this machine unless the user chose otherwise (multi-machine: set SUBNET).
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
unset _STARPOSE_ROOT
[ -n "$_STARPOSE_NOUNSET" ] && set -u
unset _STARPOSE_NOUNSET
