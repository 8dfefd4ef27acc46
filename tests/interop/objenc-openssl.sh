#!/usr/bin/env bash
# objenc-openssl.sh: an independent draft-miller-3923bis-02 ("End-to-End Object
# Encryption for XMPP") implementation made only of the OpenSSL command line
# and POSIX shell tools (bash, openssl, base64, od, tr, sed, printf, head,
# tail).  It was written from docs/PROTOCOL.md and the draft alone and shares
# no code with slixmpp-objenc; the interop tests use it as the "other client".
#
#   objenc-openssl.sh seal [--aes256] RECIPIENT_CERT.pem TIMESTAMP < S' > e2e.xml
#       S' (stdin) is the stanza-string, used as opaque bytes.  TIMESTAMP is
#       RFC 3339 UTC, e.g. 2026-11-22T13:45:00.123Z.  Prints one <e2e/>.
#
#   objenc-openssl.sh open [--cert OWN_CERT.pem] [--plain-out FILE] PRIVATE_KEY.pem
#                          < e2e.xml > S'
#       Checks the MAC before decrypting, prints S' on stdout and the
#       <plain/> timestamp (alone, on one line) on stderr.  Exit 1 on any
#       failure (nothing on stdout), 2 on a usage error.  --cert selects our
#       <key/> by its cert-sha256; --plain-out saves the decrypted E' as is.
#
# The XML "parsing" is sed on the layout a serializer produces: one <e2e/>
# holding <key/> and <data/> elements with text only; attributes in any
# order, single or double quotes, whitespace and line breaks anywhere
# between tokens and inside base64.  No entities, comments or CDATA.

set -euo pipefail
shopt -s inherit_errexit
umask 077

readonly NS='urn:ietf:params:xml:ns:xmpp-objenc:0'
readonly KEY_ALGO='RSAES-OAEP-SHA-256-MFG1'        # emitted (the draft's spelling)
readonly KEY_ALGO_ALT='RSAES-OAEP-SHA-256-MGF1'    # accepted on input
readonly MAC_ALGO='HMACSHA256'
readonly MAX_KEY_CANDIDATES=4
# An XML name prefix ("ns0:"), optional.
readonly PFX='([A-Za-z_][-.A-Za-z0-9_]*:)?'
readonly TS_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$'
readonly B64_RE='^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
# Linux refuses a single argv string over 128 KiB; "-macopt hexkey:" carries
# the MAC key in argv (see hmac_hex).
readonly MAX_HEXKEY_ARG=120000
readonly OAEP=(-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256
               -pkeyopt rsa_mgf1_md:sha256)

die() { printf 'objenc-openssl: %s\n' "$*" >&2; exit 1; }
usage() {
    printf '%s\n' \
        "usage: ${0##*/} seal [--aes256] RECIPIENT_CERT.pem TIMESTAMP < stanza > e2e.xml" \
        "       ${0##*/} open [--cert OWN_CERT.pem] [--plain-out FILE] PRIVATE_KEY.pem" \
        "                     < e2e.xml > stanza" >&2
    exit 2
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/objenc-openssl.XXXXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

# Lowercase hex of a file's bytes, one line.
hex_of() { od -An -v -tx1 "$1" | tr -d ' \n'; }

# Bytes of a hex string on stdout.
unhex() { printf '%b' "$(printf '%s' "$1" | sed 's/../\\x&/g')"; }

# HMAC-SHA256 with key = the bytes of file $1 (T), message = file $2 (R);
# lowercase hex.  PROTOCOL.md §2 / draft step 8: M = HMAC(key=T, msg=R).
hmac_hex() {
    local keyhex
    keyhex=$(hex_of "$1")
    if (( ${#keyhex} > MAX_HEXKEY_ARG )); then
        # RFC 2104 §2: a key longer than the hash's 64-byte block is first
        # replaced by its hash, so HMAC(T, R) == HMAC(SHA-256(T), R) for any
        # T over 64 bytes.  Used only to stay under the argv limit.
        openssl dgst -sha256 -binary -out "$tmp/tkey" "$1"
        keyhex=$(hex_of "$tmp/tkey")
    fi
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$keyhex" -binary -out "$tmp/mac" "$2"
    hex_of "$tmp/mac"
}

# Decode RFC 4648 §4 base64 text $1 (whitespace ignored, anything else
# outside the alphabet refused) into file $2; prints the decoded length.
b64_decode() {
    local s pad=0
    s=$(printf '%s' "$1" | tr -d ' \t\r\n') || return 1
    [[ $s =~ $B64_RE ]] || return 1
    printf '%s' "$s" | base64 -d > "$2" 2>/dev/null || return 1
    if [[ $s == *== ]]; then
        pad=2
    elif [[ $s == *= ]]; then
        pad=1
    fi
    printf '%d\n' $(( ${#s} / 4 * 3 - pad ))
}

# Value of attribute $2 in start tag $1 (either quote); status 1 if absent.
attr() {
    local out
    out=$(printf '%s\n' "$1" | sed -n -E \
        "s/^.*[[:space:]]$2[[:space:]]*=[[:space:]]*(\"([^\"]*)\"|'([^']*)').*\$/=\\2\\3/p")
    [[ -n $out ]] || return 1
    printf '%s' "${out#=}"
}

# Number of bits of the RSA modulus of the key printed by "openssl pkey ... -text_pub".
rsa_bits() {
    local text
    text=$(text_pub "$@") || return 1
    [[ $text == *Modulus:* ]] || return 1       # not an RSA key
    printf '%s\n' "$text" | sed -n -E '1s/^.*Public-Key: \(([0-9]+) bit\).*$/\1/p'
}
text_pub() {
    if [[ $1 == cert ]]; then
        openssl x509 -in "$2" -noout -pubkey 2>/dev/null \
            | openssl pkey -pubin -noout -text_pub 2>/dev/null
    else
        openssl pkey -in "$2" -noout -text_pub 2>/dev/null
    fi
}

# ------------------------------------------------------------------- seal

seal() {
    local cert='' ts='' aes=128 arg
    local -a pos=()
    for arg in "$@"; do
        case $arg in
            --aes256) aes=256 ;;
            --aes128) aes=128 ;;
            -*) usage ;;
            *) pos+=("$arg") ;;
        esac
    done
    (( ${#pos[@]} == 2 )) || usage
    cert=${pos[0]} ts=${pos[1]}
    [[ -r $cert ]] || die "cannot read certificate $cert"
    [[ $ts =~ $TS_RE ]] || die "timestamp must be RFC 3339 UTC with Z: $ts"

    local bits
    bits=$(rsa_bits cert "$cert") || die "$cert: not an RSA certificate"
    (( bits >= 2048 )) || die "$cert: RSA key of $bits bits (at least 2048 needed)"
    openssl x509 -in "$cert" -noout -checkend 0 > /dev/null \
        || die "$cert: certificate has expired"

    local keylen=$(( aes / 8 )) cipher_name="AES-$aes-CBC-PKCS5-WITH-IV"
    # Step 2: R.  Step 7's IV.
    openssl rand -out "$tmp/R" "$keylen"
    openssl rand -out "$tmp/iv" 16
    local rhex ivhex
    rhex=$(hex_of "$tmp/R")
    ivhex=$(hex_of "$tmp/iv")
    (( ${#rhex} == 2 * keylen && ${#ivhex} == 32 )) || die "openssl rand failed"

    # Steps 4-6: E' = <plain xmlns=NS timestamp=N>base64(S')</plain>, S' = stdin bytes.
    base64 -w0 > "$tmp/B"
    [[ -s $tmp/B ]] || die "empty stanza on stdin"
    {
        printf "<plain xmlns='%s' timestamp='%s'>" "$NS" "$ts"
        tail -c +1 "$tmp/B"
        printf '</plain>'
    } > "$tmp/E"

    # Step 7: T = IV || AES-CBC(R, IV, PKCS#7(E')).  "enc" pads with PKCS#7
    # by default and, given -K/-iv, writes no salt header.
    openssl enc "-aes-$aes-cbc" -K "$rhex" -iv "$ivhex" -in "$tmp/E" -out "$tmp/C"
    { head -c 16 "$tmp/iv"; tail -c +1 "$tmp/C"; } > "$tmp/T"

    # Step 8: M = HMAC-SHA256(key = T, message = R).
    local mhex
    mhex=$(hmac_hex "$tmp/T" "$tmp/R")
    unhex "$mhex" > "$tmp/M"

    # Step 9: K = RSAES-OAEP(SHA-256, MGF1-SHA-256, empty label) of R.
    openssl pkeyutl -encrypt -certin -inkey "$cert" "${OAEP[@]}" \
        -in "$tmp/R" -out "$tmp/K" 2>/dev/null || die "RSA-OAEP encryption failed"

    # Step 10.
    printf "<e2e xmlns='%s'><key cipher-algo='%s'>%s</key>" \
        "$NS" "$KEY_ALGO" "$(base64 -w0 < "$tmp/K")"
    printf "<data cipher-algo='%s' mac-algo='%s' mac-hash='%s'>%s</data></e2e>\n" \
        "$cipher_name" "$MAC_ALGO" "$(base64 -w0 < "$tmp/M")" "$(base64 -w0 < "$tmp/T")"
}

# ------------------------------------------------------------------- open

# The elements named $2 (with prefix $1) in the one-line XML on stdin:
# one "start-tag + text" per output line.
elements() {
    sed -E "s#<($1$2[[:space:]/>])#\\n<\\1#g" \
        | sed -n -E "/^<$1$2[[:space:]\\/>]/{s#^(<[^>]*>[^<]*).*\$#\\1#;p;}"
}

open_() {
    local own_cert='' keyfile='' plain_out=''
    while (( $# )); do
        case $1 in
            --cert) (( $# >= 2 )) || usage; own_cert=$2; shift 2 ;;
            --plain-out) (( $# >= 2 )) || usage; plain_out=$2; shift 2 ;;
            -*) usage ;;
            *) [[ -z $keyfile ]] || usage; keyfile=$1; shift ;;
        esac
    done
    [[ -n $keyfile ]] || usage
    [[ -r $keyfile ]] || die "cannot read private key $keyfile"
    local bits modbytes
    bits=$(rsa_bits key "$keyfile") || die "$keyfile: not an RSA private key"
    (( bits >= 2048 )) || die "$keyfile: RSA key of $bits bits (at least 2048 needed)"
    modbytes=$(( (bits + 7) / 8 ))
    local own_fp=''
    if [[ -n $own_cert ]]; then
        own_fp=$(openssl x509 -in "$own_cert" -outform DER 2>/dev/null \
                 | openssl dgst -sha256 -binary | od -An -v -tx1 | tr -d ' \n') \
            || die "cannot read certificate $own_cert"
    fi

    # The whole input on one line (whitespace between tokens is insignificant).
    tr '\t\r\n' '   ' > "$tmp/in"
    local xml
    xml=$(< "$tmp/in")

    # <e2e/> and its namespace (default or prefixed).
    local e2e_re="<(${PFX})e2e([[:space:]][^<>]*)?>"
    [[ $xml =~ $e2e_re ]] || die "no <e2e/> element"
    local pfx=${BASH_REMATCH[1]} e2e_tag=${BASH_REMATCH[0]} ns
    local xmlns_attr=xmlns${pfx:+:${pfx%:}}
    ns=$(attr "$e2e_tag" "$xmlns_attr") || die "<e2e/> has no namespace"
    [[ $ns == "$NS" ]] || die "<e2e/> in namespace '$ns', not $NS"
    local qpfx=${pfx//./\\.}

    local -a datas keys
    mapfile -t datas < <(printf '%s\n' "$xml" | elements "$qpfx" data)
    mapfile -t keys < <(printf '%s\n' "$xml" | elements "$qpfx" key)
    (( ${#datas[@]} == 1 )) || die "need exactly one <data/>, found ${#datas[@]}"
    (( ${#keys[@]} >= 1 )) || die "no <key/>"

    # <data/>: algorithms, M and T (PROTOCOL.md §5.1 step 2).
    local dtag=${datas[0]%%>*}'>' dtext=${datas[0]#*>}
    local calgo malgo mhash mdata
    calgo=$(attr "$dtag" cipher-algo) || die "<data/> without cipher-algo"
    local keylen aes
    case $calgo in
        AES-128-CBC-PKCS5-WITH-IV) keylen=16 aes=128 ;;
        AES-256-CBC-PKCS5-WITH-IV) keylen=32 aes=256 ;;
        *) die "unsupported block cipher '$calgo'" ;;
    esac
    malgo=$(attr "$dtag" mac-algo) || die "<data/> without mac-algo"
    [[ $malgo == "$MAC_ALGO" ]] || die "unsupported MAC '$malgo'"
    mhash=$(attr "$dtag" mac-hash) || mhash=''
    mdata=$(attr "$dtag" mac-data) || mdata=''
    if [[ -n $mhash && -n $mdata && ${mhash//[$' \t\r\n']/} != "${mdata//[$' \t\r\n']/}" ]]; then
        die "mac-hash and mac-data differ"
    fi
    [[ -n $mhash ]] || mhash=$mdata
    [[ -n $mhash ]] || die "<data/> without mac-hash"
    local mlen tlen
    mlen=$(b64_decode "$mhash" "$tmp/M") || die "mac-hash is not base64"
    (( mlen == 32 )) || die "MAC of $mlen bytes (32 expected)"
    tlen=$(b64_decode "$dtext" "$tmp/T") || die "<data/> text is not base64"
    (( tlen >= 32 && tlen % 16 == 0 )) || die "T of $tlen bytes (>= 32, multiple of 16 expected)"

    # <key/> candidates (§5.1 step 3): the ones naming our certificate if we
    # know it, else the ones naming none; at most MAX_KEY_CANDIDATES.
    local -a cands=() named=() unnamed=()
    local k ktag fp
    for k in "${keys[@]}"; do
        ktag=${k%%>*}'>'
        if fp=$(attr "$ktag" cert-sha256); then
            named+=("$fp" "$k")
        else
            unnamed+=("$k")
        fi
    done
    local i
    if [[ -n $own_fp ]]; then
        for (( i = 0; i < ${#named[@]}; i += 2 )); do
            [[ ${named[i]} == "$own_fp" ]] && cands+=("${named[i+1]}")
        done
    fi
    (( ${#cands[@]} )) || cands=("${unnamed[@]}")
    if (( ! ${#cands[@]} )) && [[ -z $own_fp ]]; then
        # Without our certificate we cannot tell which named <key/> is ours.
        for (( i = 0; i < ${#named[@]}; i += 2 )); do cands+=("${named[i+1]}"); done
    fi
    (( ${#cands[@]} )) || die "no <key/> for our certificate"

    local got_r='' kalgo klen tried=0
    for k in "${cands[@]}"; do
        (( tried++ < MAX_KEY_CANDIDATES )) || break
        ktag=${k%%>*}'>'
        kalgo=$(attr "$ktag" cipher-algo) || continue
        [[ $kalgo == "$KEY_ALGO" || $kalgo == "$KEY_ALGO_ALT" ]] || continue
        klen=$(b64_decode "${k#*>}" "$tmp/K") || continue
        (( klen == modbytes )) || continue
        openssl pkeyutl -decrypt -inkey "$keyfile" "${OAEP[@]}" \
            -in "$tmp/K" -out "$tmp/R" 2>/dev/null || continue
        [[ $(hex_of "$tmp/R") =~ ^[0-9a-f]{$(( 2 * keylen ))}$ ]] || continue
        got_r=1
        break
    done
    [[ -n $got_r ]] || die "no <key/> could be unwrapped with $keyfile"

    # §5.1 step 4: verify M = HMAC-SHA256(key = T, message = R) before
    # touching the ciphertext.  (A shell string comparison is not constant
    # time; this is a test tool.)
    local want have
    want=$(hmac_hex "$tmp/T" "$tmp/R")
    have=$(hex_of "$tmp/M")
    [[ $want == "$have" ]] || die "MAC mismatch: envelope has $have, computed $want"

    # Step 5: decrypt; "enc -d" checks and strips the PKCS#7 padding.
    local rhex ivhex
    rhex=$(hex_of "$tmp/R")
    ivhex=$(head -c 16 "$tmp/T" | od -An -v -tx1 | tr -d ' \n')
    tail -c +17 "$tmp/T" > "$tmp/C"
    openssl enc -d "-aes-$aes-cbc" -K "$rhex" -iv "$ivhex" -in "$tmp/C" -out "$tmp/E" \
        2>/dev/null || die "decryption failed (bad padding)"
    if [[ -n $plain_out ]]; then
        tail -c +1 "$tmp/E" > "$plain_out" || die "cannot write $plain_out"
    fi

    # E' must be one <plain/> in our namespace, text only, with a timestamp.
    local e
    e=$(tr '\t\r\n\000' '   <' < "$tmp/E")
    e=$(printf '%s' "$e" | sed -E 's/^[[:space:]]*<\?xml[^>]*\?>//')
    local plain_re="^[[:space:]]*<(${PFX})plain([[:space:]][^<>]*)?>([^<&]*)</(${PFX})plain[[:space:]]*>[[:space:]]*\$"
    [[ $e =~ $plain_re ]] || die "decrypted data is not a single <plain/> element"
    local ppfx=${BASH_REMATCH[1]} ptag ptext=${BASH_REMATCH[4]}
    [[ ${BASH_REMATCH[5]} == "$ppfx" ]] || die "mismatched </plain> tag"
    ptag="<${ppfx}plain${BASH_REMATCH[3]}>"
    ns=$(attr "$ptag" "xmlns${ppfx:+:${ppfx%:}}") || die "<plain/> has no namespace"
    [[ $ns == "$NS" ]] || die "<plain/> in namespace '$ns', not $NS"
    local ts
    ts=$(attr "$ptag" timestamp) || die "<plain/> without timestamp"
    [[ $ts =~ $TS_RE ]] || die "timestamp is not RFC 3339 UTC with Z: $ts"

    # Step 6: S' = base64-decode(text).
    local slen
    slen=$(b64_decode "$ptext" "$tmp/S") || die "<plain/> text is not base64"
    (( slen > 0 )) || die "empty stanza-string"
    tail -c +1 "$tmp/S"
    printf '%s\n' "$ts" >&2
}

# ------------------------------------------------------------------- main

(( $# >= 1 )) || usage
cmd=$1
shift
case $cmd in
    seal) seal "$@" ;;
    open) open_ "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
