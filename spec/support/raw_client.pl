#!/usr/bin/perl
# Raw TCP clients for the listener's hostile-traffic specs and the bench's slow
# row: what curl cannot send (conflicting framing headers, a request head that
# never ends). Only core Perl (perl-base), only to the address given.
#
#   perl raw_client.pl send HOST PORT SECONDS < request
#     sends stdin's bytes as they are, then reads until the server closes
#     (or SECONDS pass); prints the answer, then a last line
#     "--closed--" or "--open--" (the server kept the connection).
#   perl raw_client.pl slow HOST PORT COUNT SECONDS LOCAL_ADDR INTERVAL [REOPEN] [READY_FILE]
#     opens COUNT connections from LOCAL_ADDR (e.g. 127.0.0.2), each sending
#     the start of a request head and then one more header byte every
#     INTERVAL seconds, for SECONDS; with REOPEN = 1 a connection the server
#     closed is opened again. Writes "ready N" to READY_FILE once the
#     connections are open; prints "opened=N closed=M refused=R" at the end:
#     M connections the server closed, R it refused at once.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Socket qw(SOL_SOCKET SO_LINGER);

my $mode = shift @ARGV // '';

sub connect_to {
  my ($host, $port, $local) = @_;
  return IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp',
                               ($local ? (LocalAddr => $local) : ()), Timeout => 5);
}

if ($mode eq 'send') {
  my ($host, $port, $secs) = @ARGV;
  local $/;
  binmode STDIN;
  my $req = <STDIN> // '';
  my $s = connect_to($host, $port) or die "connect: $!\n";
  binmode $s;
  $s->syswrite($req);
  my $sel = IO::Select->new($s);
  my ($out, $closed, $end) = ('', 0, time + $secs);
  while (time <= $end) {
    next unless $sel->can_read(0.2);
    my $n = $s->sysread(my $buf, 65536);
    if (!$n) { $closed = 1; last }
    $out .= $buf;
  }
  binmode STDOUT;
  print $out, "\n", ($closed ? "--closed--" : "--open--"), "\n";
  exit 0;
}

if ($mode eq 'slow') {
  my ($host, $port, $count, $secs, $local, $interval, $reopen, $ready) = @ARGV;
  my $head = "POST /hook HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  my ($opened, $closed, $refused) = (0, 0, 0);
  my @socks;
  my $open_one = sub {
    my $s = connect_to($host, $port, $local);
    if (!$s) { $refused++; return undef }
    $s->blocking(0);
    $opened++;
    $s->syswrite($head);
    return $s;
  };
  for (1 .. $count) { push @socks, $open_one->() }
  if ($ready) {
    open(my $f, '>', "$ready.part") or die;
    print $f "ready ", scalar(grep { defined } @socks), "\n";
    close $f;
    rename "$ready.part", $ready;
  }
  my $end = time + $secs;
  while (time < $end) {
    for my $i (0 .. $#socks) {
      my $s = $socks[$i];
      next unless $s;
      my $n = $s->sysread(my $buf, 4096);
      my $gone = (defined $n && $n == 0) || (!defined $n && !$!{EAGAIN} && !$!{EWOULDBLOCK});
      if (!$gone) {
        my $w = $s->syswrite("a");
        $gone = !defined $w && !$!{EAGAIN} && !$!{EWOULDBLOCK};
      }
      if ($gone) {
        $closed++;
        close $s;
        $socks[$i] = $reopen ? $open_one->() : undef;
      }
    }
    select(undef, undef, undef, $interval);
  }
  print "opened=$opened closed=$closed refused=$refused\n";
  exit 0;
}

die "usage: raw_client.pl send HOST PORT SECONDS | slow HOST PORT COUNT SECONDS LOCAL_ADDR INTERVAL [REOPEN] [READY_FILE]\n";
