#!/usr/bin/perl
# Writes small MaxMind DB files for the collector's geolocation tests into
# OUTDIR, with libmaxmind-db-writer-perl (MaxMind::DB::Writer::Tree), the
# same writer MaxMind's own test databases come from. Only documentation
# ranges (RFC 5737, RFC 3849), so no real network is ever described.
#
#   country.mmdb   database_type "Parallax-Test-Country" (country layout,
#                  like GeoLite2-Country): country.iso_code
#   networks.mmdb  database_type "Parallax-Test-Networks" (ASN layout, like
#                  GeoLite2-ASN; the name says nothing, so the collector
#                  must recognise it from its records)
#   combined.mmdb  database_type "Parallax-Test": both layouts in one record,
#                  recognised from the records alone
#   other.mmdb     records without a country or an ASN: to be refused
#
#   203.0.113.0/24   CN  AS4134  CHINANET
#   198.51.100.0/24  DE  AS3320  Deutsche Telekom AG
#   192.0.2.0/24     (registered_country US only)  AS64500  Réseau d'essai ✓
#   2001:db8::/32    FR  AS3215  Orange S.A.
#
# Usage: make-mmdb.pl OUTDIR
use strict;
use warnings;
use utf8;

use MaxMind::DB::Writer::Tree;

my $out = shift @ARGV or die "usage: make-mmdb.pl OUTDIR\n";

my %types = (
    country                        => 'map',
    registered_country             => 'map',
    iso_code                       => 'utf8_string',
    names                          => 'map',
    en                             => 'utf8_string',
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
    color                          => 'utf8_string',
);

sub tree {
    my ($type) = @_;
    return MaxMind::DB::Writer::Tree->new(
        ip_version            => 6,
        record_size           => 24,
        database_type         => $type,
        languages             => ['en'],
        description           => { en => "parallax test data: $type" },
        map_key_type_callback => sub { $types{ $_[0] } },
        # Documentation ranges are "reserved": the writer drops them
        # unless told otherwise.
        remove_reserved_networks => 0,
        alias_ipv6_to_ipv4       => 1,
    );
}

sub write_tree {
    my ($tree, $name) = @_;
    open my $fh, '>:raw', "$out/$name" or die "$out/$name: $!\n";
    $tree->write_tree($fh);
    close $fh or die "$out/$name: $!\n";
}

my $country = tree('Parallax-Test-Country');
$country->insert_network('203.0.113.0/24',
    { country => { iso_code => 'CN', names => { en => 'China' } } });
$country->insert_network('198.51.100.0/24',
    { country => { iso_code => 'DE', names => { en => 'Germany' } } });
$country->insert_network('192.0.2.0/24',
    { registered_country => { iso_code => 'US', names => { en => 'United States' } } });
$country->insert_network('2001:db8::/32',
    { country => { iso_code => 'FR', names => { en => 'France' } } });
write_tree($country, 'country.mmdb');

my $asn = tree('Parallax-Test-Networks');
$asn->insert_network('203.0.113.0/24',
    { autonomous_system_number => 4134, autonomous_system_organization => 'CHINANET' });
$asn->insert_network('198.51.100.0/24',
    { autonomous_system_number => 3320, autonomous_system_organization => 'Deutsche Telekom AG' });
$asn->insert_network('192.0.2.0/24',
    { autonomous_system_number => 64500, autonomous_system_organization => "Réseau d'essai ✓" });
$asn->insert_network('2001:db8::/32',
    { autonomous_system_number => 3215, autonomous_system_organization => 'Orange S.A.' });
write_tree($asn, 'networks.mmdb');

my $combined = tree('Parallax-Test');
$combined->insert_network('203.0.113.0/24',
    { country => { iso_code => 'cn' }, autonomous_system_number => 4134,
      autonomous_system_organization => 'CHINANET' });
write_tree($combined, 'combined.mmdb');

my $other = tree('Parallax-Test-Other');
$other->insert_network('203.0.113.0/24', { color => 'blue' });
write_tree($other, 'other.mmdb');
