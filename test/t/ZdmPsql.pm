# ZdmPsql: a psql session started in the background, for the TAP tests
# that hold one session in a step while others act (t/003, t/011, t/012).
package ZdmPsql;

use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(basename);
use IPC::Run;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(start_psql);

my $scripts = 0;

# Start psql on $script against $node's database postgres (application_name
# $appname, if given); returns the IPC::Run handle and references to its
# stdout and stderr.  The script goes through a file: IPC::Run feeds a
# scalar to stdin only while the caller pumps.
sub start_psql
{
	my ($node, $script, $appname) = @_;
	my ($out, $err) = ('', '');
	# tmp_check is shared by every TAP file of a run: the test's own name
	# keeps its scripts apart, and a script is written whole, not appended.
	my $file = "$PostgreSQL::Test::Utils::tmp_check/" . basename($0, '.pl') . '_script_'
	  . $node->name . '_' . ++$scripts . '.sql';
	unlink($file);
	append_to_file($file, $script);
	my $connstr = $node->connstr('postgres');
	$connstr .= " application_name=$appname" if $appname;
	my $h = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq',
			'-v', 'ON_ERROR_STOP=1',
			'-d', $connstr,
			'-f', $file
		],
		'<', '/dev/null',
		'>', \$out,
		'2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($h, \$out, \$err);
}

1;
