// No custom script. Homepage needs this file anyway: /api/hash, requested by every page load, exits
// the process when it is missing and /app/config is not writable
// (gethomepage/homepage src/utils/config/config.js checkAndCopyConfig).
