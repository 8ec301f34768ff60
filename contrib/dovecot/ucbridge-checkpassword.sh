#!/bin/sh
# Dovecot checkpassword passdb for ucbridge (see 90-ucbridge-passdb.conf).
# Dovecot runs this with the path of its checkpassword-reply as the argument and the
# user name and password on fd 3; `ucbridge auth checkpassword` does the rest.
#
# UCBRIDGE_PASSDB_SERVER      where `ucbridge serve` listens (https:// in production)
# UCBRIDGE_PASSDB_TOKEN_FILE  the token of ucbridge's [signin] passdb_token_file; readable
#                             by the user Dovecot's auth process runs as, by nobody else
# UCBRIDGE_PASSDB_CA_FILE     a private CA that signed ucbridge's certificate (optional)
export UCBRIDGE_PASSDB_SERVER=https://ucbridge.example.com:8443
export UCBRIDGE_PASSDB_TOKEN_FILE=/etc/dovecot/ucbridge-passdb-token
#export UCBRIDGE_PASSDB_CA_FILE=/etc/dovecot/ucbridge-ca.pem
exec /usr/local/bin/ucbridge auth checkpassword "$@"
