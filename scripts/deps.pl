# Lists byocd's module dependencies, one `MODULE -> MODULE` line per edge, from the `crate::`
# paths (and `super::` paths, resolved) of every file of the library:
#
#   perl -0777 -n scripts/deps.pl $(find src -name '*.rs' -not -path 'src/bin/*') | sort -u
#
# A module is a top-level module of src/; a namespace directory (a mod.rs that only declares
# submodules: salesforce, lifecycle, sandbox) counts each submodule as one. Piping the edges
# through `awk '{print $3, $1}' | tsort` prints the modules bottom-up, or reports a loop.
sub ns { my ($n, $h) = @_; return $ns{$n} //= (open($h, "<", "src/$n/mod.rs") && !grep { !/^\s*(\/\/.*|(pub\s+)?mod\s+\w+;)?\s*$/ } split /\n/, do { local $/; <$h> }) ? 1 : 0 }
sub items { my ($d, $c, @o) = (0, ""); for my $ch (split //, $_[0]) { $d++ if $ch eq "{"; $d-- if $ch eq "}"; if ($ch eq "," && !$d) { push @o, $c; $c = "" } else { $c .= $ch } } (@o, $c) }
sub node { my ($a, $b) = @_; ns($a) ? (defined $b && (-e "src/$a/$b.rs" || -d "src/$a/$b") ? "${a}::$b" : ()) : $a }
sub targets { my ($a, $rest) = $_[0] =~ /^\s*(\w+)(?:::(.*))?$/s or return (); return node($a) unless defined $rest; return node($a, $1) if $rest =~ /^(\w+)/; return map { /^\s*(\w+)/ ? node($a, $1) : () } items(substr($rest, 1, -1)) if $rest =~ /^\{/; () }
my @m = split m{/}, ($ARGV =~ s{^src/}{}r =~ s{(/mod)?\.rs$}{}r);
my $me = node($m[0], @m > 1 ? $m[1] : undef) // $m[0];
s{//[^\n]*}{}g;
s{\bsuper::super::}{"crate::" . join("::", @m[0 .. $#m - 2]) . "::"}ge if @m > 2;
s{\bsuper::}{"crate::" . join("::", @m[0 .. $#m - 1]) . "::"}ge if @m > 1;
my %d;
while (/crate::((?:\w+::)*(?:\w+|(\{(?:[^{}]++|(?2))*\})))/g) { my $p = $1; $d{$_} = 1 for grep { $_ ne $me } ($p =~ /^\{/ ? map { targets($_) } items(substr($p, 1, -1)) : targets($p)) }
print "$me -> $_\n" for sort keys %d;
